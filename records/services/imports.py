"""The write path of records arriving from another provider (exchange/fhir/importer.py).

The importer is a person's account (``manage.py import_fhir --actor``) holding ``import_records``; it
needs no care relationship, since the records are new to this hospital, and it is shown nothing but
counts. Every row is validated, saved and reported by ``patient_data_changed`` (action ``import``) in
the caller's transaction, like any other write, so each imported row is a change event naming who
imported it. ``source_id`` is the blind index of the resource's id in the source system
(records.crypto.source_index); a re-import finds rows by it.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any, TypeVar

from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.roles import Capability, DataCategory
from healthcrypt.bulk import bulk_insert, draw_keys
from records.crypto import mrn_index
from records.models import (
    Allergy,
    Condition,
    DiagnosticReport,
    Encounter,
    ImagingStudy,
    Immunization,
    Medication,
    Observation,
    Patient,
    Procedure,
)
from records.services.base import DuplicatePatient, RecordNotFound, _changed, _require, _save
from records.services.patients import _check_demographic_fields, _set_indexes
from records.signals import patient_rows_changed

D = DataCategory

# The section of the record each imported kind of row belongs to (the change event's category).
IMPORT_CATEGORIES: dict[type, DataCategory] = {
    Encounter: D.ENCOUNTERS,
    Observation: D.OBSERVATIONS,
    DiagnosticReport: D.OBSERVATIONS,
    Condition: D.CONDITIONS,
    Medication: D.MEDICATIONS,
    Allergy: D.ALLERGIES,
    Procedure: D.PROCEDURES,
    Immunization: D.IMMUNIZATIONS,
    ImagingStudy: D.IMAGING,
}

_Imported = TypeVar(
    "_Imported",
    Encounter,
    Observation,
    DiagnosticReport,
    Condition,
    Medication,
    Allergy,
    Procedure,
    Immunization,
    ImagingStudy,
)


@transaction.atomic
def imported_patient_create(
    *,
    actor: Any,
    source_id: str,
    mrn: str,
    given_name: str,
    family_name: str,
    birth_date: datetime.date,
    sex: str,
    **details: Any,
) -> Patient:
    """Create a patient from an imported record. A second patient with the same MRN is refused
    (DuplicatePatient, naming no value); a surname and birth date already known are not, since the
    source says who this is."""
    _require(actor, Capability.IMPORT_RECORDS)
    _check_demographic_fields(details)
    if not source_id:
        raise ValidationError({"source_id": "An imported patient needs its source identifier."})
    if Patient.objects.filter(mrn_index=mrn_index(mrn)).exists():
        raise DuplicatePatient({"mrn": "A different patient with this MRN is already registered."})
    patient = Patient(
        mrn=mrn.strip(), given_name=given_name.strip(), family_name=family_name.strip(), sex=sex, source_id=source_id
    )
    patient.birth_date = birth_date
    for name, value in details.items():
        setattr(patient, name, value)
    _set_indexes(patient)
    # _require marked the transaction, in this savepoint, and nothing was rolled back since.
    _save(patient, actor, marked=True)
    _changed(
        Patient,
        actor=actor,
        patient_id=patient.pk,
        category=D.DEMOGRAPHICS,
        action="import",
        fields=("mrn", "given_name", "family_name", "birth_date", "sex", *sorted(details)),
        object_id=patient.pk,
    )
    return patient


@transaction.atomic
def imported_entry_create(*, actor: Any, entry: _Imported) -> _Imported:
    """Save one imported row of a patient's record (an encounter, a result, a diagnosis...).

    ``entry`` is an unsaved model instance with its patient and ``source_id`` set; see
    :func:`imported_entries_create`, which writes many at once.
    """
    (saved,) = imported_entries_create(actor=actor, entries=[entry])
    return saved


@transaction.atomic
def imported_entries_create(*, actor: Any, entries: Sequence[_Imported]) -> list[_Imported]:
    """Save imported rows (a bundle's encounters, or its results, diagnoses...) with one INSERT per kind
    (a COPY on PostgreSQL: healthcrypt/bulk.py).

    Each entry is an unsaved model instance with its patient and ``source_id`` set; rows of several
    imported kinds may come together, and are written kind by kind in the order their first row
    comes. A row may point to an encounter of the same call before it has a key (``row.encounter =
    the unsaved encounter``) if the encounters come first: it gets the key when they are written, and
    the encounter must be the row's patient's. Each kind's fields are validated (``full_clean``) before its rows are written; the checks
    that would cost a query per row are asked once for all the rows (the patients exist, each
    encounter belongs to its row's patient) and applied kind by kind, so a refusal is raised by the
    same kind, in the same order, as if each kind were saved by a call of its own (the rows of the
    kinds before it have their primary keys, the others not). The database enforces the rest (unique
    row identities, check constraints), so a refusal anywhere undoes the caller's whole transaction.
    One change event per row, naming field names only, all written together after the rows. No
    django-auditlog entry: that history is the safety net for writes that bypass these services
    (audit/apps.py), and these rows come with their change events.
    """
    _require(actor, Capability.IMPORT_RECORDS)
    if not entries:
        return []
    kinds: dict[type[_Imported], list[_Imported]] = {}
    for entry in entries:
        if type(entry) not in IMPORT_CATEGORIES:
            raise TypeError("Imported rows are saved through this service only for the kinds that are imported")
        kinds.setdefault(type(entry), []).append(entry)
    patient_ids = {entry.patient_id for entry in entries}
    patients = set(Patient.objects.filter(pk__in=patient_ids - {None}).values_list("pk", flat=True))
    wanted = {
        (encounter_id, entry.patient_id)
        for entry in entries
        if (encounter_id := getattr(entry, "encounter_id", None)) is not None
    }
    owners = (
        set(Encounter.objects.filter(pk__in={encounter for encounter, _ in wanted}).values_list("pk", "patient_id"))
        if wanted
        else set()
    )
    # Encounters of this call, by identity: a row may point to one of them before it has a key.
    batch_encounters = {id(entry) for entry in entries if type(entry) is Encounter}
    # Every kind's keys in one statement (PostgreSQL's COPY path), before the first kind is checked.
    keys = draw_keys(list(kinds.items()))
    saved: list[_Imported] = []
    groups: list[tuple[type, DataCategory, tuple[str, ...], list[tuple[int, int]]]] = []
    for model, rows in kinds.items():
        for entry in rows:
            if not entry.source_id:
                raise ValidationError({"source_id": "An imported row needs its source identifier."})
            # Foreign keys are checked below for the whole batch; uniqueness and check constraints by
            # the database when the rows are inserted.
            entry.full_clean(
                exclude=["patient", "encounter", "panel"], validate_unique=False, validate_constraints=False
            )
        if any(entry.patient_id not in patients for entry in rows):
            raise RecordNotFound
        if any(
            (encounter_id := getattr(entry, "encounter_id", None)) is not None
            and (encounter_id, entry.patient_id) not in owners
            for entry in rows
        ):
            # A bundle may hold several patients: a result must not land in another patient's encounter.
            raise ValidationError({"encounter": "The encounter belongs to another patient."})
        if any(not _new_encounter_ok(entry, batch_encounters) for entry in rows):
            raise ValidationError({"encounter": "The encounter belongs to another patient or was not written first."})
        # Components after their panels, in a second INSERT (the kind's keys split between the two).
        panels, components = _panels_first(model, rows)
        drawn = keys.get(model)
        inserted: list[_Imported] = bulk_insert(model, panels, keys=drawn[: len(panels)] if drawn else None)
        inserted += bulk_insert(model, components, keys=drawn[len(panels) :] if drawn else None)
        groups.append((model, IMPORT_CATEGORIES[model], _event_fields(model), [(e.patient_id, e.pk) for e in inserted]))
        saved.extend(inserted)
    # The change events of every kind written above, in one INSERT, in this transaction: if it fails,
    # none of the rows stays (the caller's transaction is undone with the error).
    patient_rows_changed.send(sender=type(entries[0]), actor=actor, action="import", groups=groups)
    return saved


def _panels_first(model: type[_Imported], rows: list[_Imported]) -> tuple[list[_Imported], list[_Imported]]:
    """An observation's rows split in two: the others, then the components (each holding its panel).

    A component's panel must be an unsaved row of the same call and kind, of the same patient, and not
    a component itself (one level); a key set by hand instead is refused, since it could name any row,
    of any patient."""
    if model is not Observation:
        return rows, []
    batch = {id(row) for row in rows}
    panels: list[_Imported] = []
    components: list[_Imported] = []
    for row in rows:
        if getattr(row, "panel_id", None) is not None:
            raise ValidationError({"panel": "A component's panel is a row of the same import."})
        panel: Any = row._state.fields_cache.get("panel")
        if panel is None:
            panels.append(row)
            continue
        if (
            id(panel) not in batch
            or panel.pk is not None
            or panel.patient_id != row.patient_id
            or panel._state.fields_cache.get("panel") is not None
        ):
            raise ValidationError({"panel": "A component's panel is a row of the same import and patient."})
        components.append(row)
    return panels, components


def _new_encounter_ok(entry: Any, batch_encounters: set[int]) -> bool:
    """A row that holds an unsaved encounter (no ``encounter_id`` yet) instead of a key: the encounter
    must be one of this call's, already written (its kind came first), and of the row's patient.
    Rows with a key were checked against the database with the others."""
    if getattr(entry, "encounter_id", None) is not None:
        return True
    # The related row assigned (Django keeps it in the instance's field cache), never a query.
    encounter: Any = entry._state.fields_cache.get("encounter")
    if encounter is None:
        return True  # no encounter
    return id(encounter) in batch_encounters and encounter.pk is not None and encounter.patient_id == entry.patient_id


def _event_fields(model: type[_Imported]) -> tuple[str, ...]:
    """The field names a change event of an imported row names (values never)."""
    return tuple(
        field.name
        for field in model._meta.concrete_fields
        if not field.primary_key and field.name not in ("patient", "row_uid", "source_id", "created_at")
    )
