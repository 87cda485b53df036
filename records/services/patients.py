"""Registration and demographics (front desk), encounters and the care team."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import Department
from accounts.roles import Capability, DataCategory, Role
from records.crypto import address_index, family_name_index, given_name_index, mrn_index, name_dob_index
from records.models import CareAssignment, Encounter, Patient
from records.services.base import DuplicatePatient, EncounterAlreadyClosed, RecordNotFound, _changed, _require, _save

D = DataCategory

DEMOGRAPHIC_FIELDS = (
    "mrn",
    "given_name",
    "family_name",
    "birth_date",
    "sex",
    "address_line",
    "city",
    "state",
    "postal_code",
    "phone",
    "email",
    "national_id",
    "emergency_contact_name",
    "emergency_contact_phone",
    "deceased_date",
    "is_confidential",
)


def possible_duplicates(*, family_name: str, birth_date: datetime.date) -> int:
    """How many registered patients share this surname and birth date (a count, never who)."""
    return Patient.objects.filter(name_dob_index=name_dob_index(family_name, birth_date)).count()


@transaction.atomic
def patient_register(
    *,
    actor: Any,
    mrn: str,
    given_name: str,
    family_name: str,
    birth_date: datetime.date,
    sex: str,
    allow_possible_duplicate: bool = False,
    source_id: str = "",
    **details: Any,
) -> Patient:
    """Register a new patient. The MRN must be new; a surname + birth-date match needs confirmation."""
    _require(actor, Capability.REGISTER_PATIENT)
    _check_demographic_fields(details)
    if Patient.objects.filter(mrn_index=mrn_index(mrn)).exists():
        raise DuplicatePatient({"mrn": "A patient with this MRN is already registered."})
    if not allow_possible_duplicate and possible_duplicates(family_name=family_name, birth_date=birth_date):
        raise DuplicatePatient(
            {
                "family_name": "A patient with this surname and birth date is already registered. "
                "Search for them first, or confirm that this is a different person."
            }
        )
    patient = Patient(
        mrn=mrn.strip(),
        given_name=given_name.strip(),
        family_name=family_name.strip(),
        sex=sex,
        source_id=source_id,
        **details,
    )
    # Set apart: to the type checker an encrypted field is the text column it is stored in, so the
    # constructor would take only text; the attribute takes the date it decrypts to.
    patient.birth_date = birth_date
    _set_indexes(patient)
    _save(patient, actor)
    _changed(
        Patient,
        actor=actor,
        patient_id=patient.pk,
        category=D.DEMOGRAPHICS,
        action="create",
        fields=DEMOGRAPHIC_FIELDS,
        object_id=patient.pk,
    )
    return patient


def _check_demographic_fields(names: Iterable[str]) -> None:
    """Refuse a field that is not part of the registration (a caller's bug, not the user's)."""
    unknown = set(names) - set(DEMOGRAPHIC_FIELDS)
    if unknown:
        raise TypeError(f"Unknown demographic fields: {', '.join(sorted(unknown))}")


def _demographics_update(patient: Patient, values: Mapping[str, Any], actor: Any) -> list[str]:
    """Set the fields of ``values`` that differ on ``patient`` (locked by the caller), refresh the blind
    indexes, save and report the change (field names only). Returns the names changed, none if none."""
    changed = [name for name, value in values.items() if getattr(patient, name) != value]
    if not changed:
        return []
    for name in changed:
        setattr(patient, name, values[name])
    _set_indexes(patient)
    _save(patient, actor)
    _changed(
        Patient,
        actor=actor,
        patient_id=patient.pk,
        category=D.DEMOGRAPHICS,
        action="update",
        fields=changed,
        object_id=patient.pk,
    )
    return changed


def _set_indexes(patient: Patient) -> None:
    patient.mrn_index = mrn_index(patient.mrn)
    patient.name_dob_index = name_dob_index(patient.family_name, patient.birth_date)
    patient.family_name_index = family_name_index(patient.family_name)
    patient.given_name_index = given_name_index(patient.given_name)
    patient.address_index = address_index(patient.address_line or "", patient.postal_code or "")


@transaction.atomic
def patient_update_demographics(*, actor: Any, patient_id: int, **changes: Any) -> list[str]:
    """Change registration data; returns the names of the fields that really changed."""
    _require(actor, Capability.EDIT_DEMOGRAPHICS)
    _check_demographic_fields(changes)
    patient = Patient.objects.select_for_update().filter(pk=patient_id).first()
    if patient is None:
        raise RecordNotFound
    if (
        "mrn" in changes
        and changes["mrn"] != patient.mrn
        and Patient.objects.filter(mrn_index=mrn_index(changes["mrn"])).exclude(pk=patient_id).exists()
    ):
        raise DuplicatePatient({"mrn": "Another patient already has this MRN."})
    return _demographics_update(patient, changes, actor)


@transaction.atomic
def encounter_admit(
    *,
    actor: Any,
    patient_id: int,
    kind: str,
    department: Department | None,
    attending: Any = None,
    reason: str = "",
    starts_at: datetime.datetime | None = None,
) -> Encounter:
    """Open an encounter (admission, emergency visit, appointment).

    A patient is in one bed at a time: a second inpatient stay while one is in progress is refused
    (the patient row is locked first, so two admissions at once cannot both pass the check).
    """
    _require(actor, Capability.ADMIT_PATIENT)
    if not Patient.objects.select_for_update().filter(pk=patient_id).exists():
        raise RecordNotFound
    if attending is not None and attending.role != Role.PHYSICIAN:
        raise ValidationError({"attending": "The attending must be a physician."})
    if (
        kind == Encounter.Kind.INPATIENT
        and Encounter.objects.filter(
            patient_id=patient_id, kind=Encounter.Kind.INPATIENT, status=Encounter.Status.IN_PROGRESS
        ).exists()
    ):
        raise ValidationError(
            {"kind": "This patient already has an inpatient stay in progress; discharge them before admitting again."}
        )
    encounter = Encounter(
        patient_id=patient_id,
        kind=kind,
        status=Encounter.Status.IN_PROGRESS,
        department=department,
        attending=attending,
        reason=reason,
        starts_at=starts_at or timezone.now(),
    )
    _save(encounter, actor)
    _changed(
        Encounter,
        actor=actor,
        patient_id=patient_id,
        category=D.ENCOUNTERS,
        action="create",
        fields=("kind", "department", "attending", "reason", "starts_at"),
        object_id=encounter.pk,
    )
    return encounter


@transaction.atomic
def encounter_discharge(
    *, actor: Any, patient_id: int, encounter_id: int, ends_at: datetime.datetime | None = None
) -> Encounter:
    """Close an open encounter of ``patient_id``.

    An encounter of another patient is RecordNotFound (a 404), as if it did not exist: the caller
    names the patient it acts for, and only that patient's stays can be closed. A stay already
    closed is EncounterAlreadyClosed (a ValidationError), and nothing is written.
    """
    _require(actor, Capability.ADMIT_PATIENT)
    encounter = Encounter.objects.select_for_update().filter(pk=encounter_id, patient_id=patient_id).first()
    if encounter is None:
        raise RecordNotFound
    if encounter.status not in (Encounter.Status.PLANNED, Encounter.Status.IN_PROGRESS):
        raise EncounterAlreadyClosed("This stay is already closed.")
    encounter.status = Encounter.Status.FINISHED
    encounter.ends_at = ends_at or timezone.now()
    _save(encounter, actor)
    _changed(
        Encounter,
        actor=actor,
        patient_id=encounter.patient_id,
        category=D.ENCOUNTERS,
        action="update",
        fields=("status", "ends_at"),
        object_id=encounter.pk,
    )
    return encounter


@transaction.atomic
def care_assignment_create(
    *,
    actor: Any,
    staff: Any,
    patient: Patient | int,
    team_role: str,
    starts_at: datetime.datetime | None = None,
    ends_at: datetime.datetime | None = None,
) -> CareAssignment:
    """Put ``staff`` on a patient's care team."""
    _require(actor, Capability.ASSIGN_CARE_TEAM)
    patient_id = patient if isinstance(patient, int) else patient.pk
    if not Patient.objects.filter(pk=patient_id).exists():
        raise RecordNotFound
    if staff.role not in (Role.PHYSICIAN, Role.NURSE) or not staff.is_active:
        raise ValidationError({"staff": "Only active physicians and nurses join a care team."})
    assignment = CareAssignment(
        staff=staff,
        patient_id=patient_id,
        team_role=team_role,
        starts_at=starts_at or timezone.now(),
        ends_at=ends_at,
        assigned_by=actor,
    )
    _save(assignment, actor)
    _changed(
        CareAssignment,
        actor=actor,
        patient_id=patient_id,
        category=D.CARE_TEAM,
        action="create",
        fields=("staff", "team_role", "starts_at", "ends_at"),
        object_id=assignment.pk,
    )
    return assignment


@transaction.atomic
def care_assignment_end(*, actor: Any, patient_id: int, assignment_id: int) -> CareAssignment:
    """Take someone off ``patient_id``'s care team now; their access to the chart ends with it.

    An assignment to another patient's team, or one already ended, is RecordNotFound (a 404).
    """
    _require(actor, Capability.ASSIGN_CARE_TEAM)
    assignment = (
        CareAssignment.objects.select_for_update()
        .filter(pk=assignment_id, patient_id=patient_id, ends_at__isnull=True)
        .first()
    )
    if assignment is None:
        raise RecordNotFound
    assignment.ends_at = max(timezone.now(), assignment.starts_at + datetime.timedelta(seconds=1))
    _save(assignment, actor)
    _changed(
        CareAssignment,
        actor=actor,
        patient_id=assignment.patient_id,
        category=D.CARE_TEAM,
        action="update",
        fields=("ends_at",),
        object_id=assignment.pk,
    )
    return assignment
