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
from typing import Any, TypeVar

from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.roles import Capability, DataCategory
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
from records.services.base import DuplicatePatient, _changed, _require, _save
from records.services.patients import DEMOGRAPHIC_FIELDS, _set_indexes

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
    unknown = set(details) - set(DEMOGRAPHIC_FIELDS)
    if unknown:
        raise TypeError(f"Unknown demographic fields: {', '.join(sorted(unknown))}")
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
    _save(patient, actor)
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

    ``entry`` is an unsaved model instance with its patient and ``source_id`` set; its fields are
    validated (``full_clean``) before it is saved, and the change event lists field names only.
    """
    _require(actor, Capability.IMPORT_RECORDS)
    category = IMPORT_CATEGORIES.get(type(entry))
    if category is None:
        raise TypeError(f"{type(entry).__name__} rows are not imported")
    if not entry.source_id:
        raise ValidationError({"source_id": "An imported row needs its source identifier."})
    encounter_id = getattr(entry, "encounter_id", None)
    if encounter_id is not None and not Encounter.objects.filter(pk=encounter_id, patient_id=entry.patient_id).exists():
        # A bundle may hold several patients: a result must not land in another patient's encounter.
        raise ValidationError({"encounter": "The encounter belongs to another patient."})
    _save(entry, actor)
    fields = tuple(
        field.name
        for field in type(entry)._meta.concrete_fields
        if not field.primary_key and field.name not in ("patient", "row_uid", "source_id", "created_at")
    )
    _changed(
        type(entry),
        actor=actor,
        patient_id=entry.patient_id,
        category=category,
        action="import",
        fields=fields,
        object_id=entry.pk,
    )
    return entry
