"""The one write path of the clinical record (DESIGN.md §4).

Every function takes the acting user explicitly (``None`` only for system jobs such as the demo
seed or an import), checks capability and relationship, validates with ``full_clean()`` inside a
transaction, and sends ``patient_data_changed`` in that same transaction, so a failing audit
receiver undoes the change. Signals name the fields that changed, never their values.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterable
from typing import IO, Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import Department
from accounts.roles import Capability, DataCategory, Role, has_capability
from records.crypto import address_index, family_name_index, mrn_index, name_dob_index
from records.db import mark_actor
from records.models import (
    Allergy,
    Attachment,
    CareAssignment,
    ClinicalNote,
    Condition,
    Encounter,
    Medication,
    MedicationAdministration,
    Observation,
    Order,
    Patient,
)
from records.permissions import chart_access, order_access
from records.signals import patient_data_changed

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


class RecordNotFound(Exception):
    """The target does not exist, or the actor has no relationship to it (same answer: 404)."""


class DuplicatePatient(ValidationError):
    """Registration would create a second record for a patient already registered."""


def _changed(
    sender: type,
    *,
    actor: Any,
    patient_id: int,
    category: str,
    action: str,
    fields: Iterable[str],
    object_id: int | None = None,
) -> None:
    patient_data_changed.send(
        sender=sender,
        actor=actor,
        patient_id=patient_id,
        category=category,
        action=action,
        fields=tuple(fields),
        object_id=object_id,
    )


def _require(actor: Any, capability: Capability) -> None:
    """Refuse a role without ``capability``; mark the transaction as the application's (records/db.py)."""
    if actor is not None and not has_capability(actor, capability):
        raise PermissionDenied("Your role does not allow this.")
    mark_actor(actor)


def _require_relationship(actor: Any, patient_id: int, category: DataCategory) -> str:
    """The relationship that lets ``actor`` write to this patient's ``category``; raises otherwise."""
    if actor is None:
        return "system"
    decision = chart_access(actor, patient_id)
    if decision.status == 403:
        raise PermissionDenied("Your role does not allow this.")
    if not decision.allowed or category not in decision.categories:
        raise RecordNotFound
    return decision.explanation


def _save(instance: Any, actor: Any = None) -> None:
    instance.full_clean()
    mark_actor(actor)
    instance.save()


# --- Registration (front desk) --------------------------------------------------------------------


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
    unknown = set(details) - set(DEMOGRAPHIC_FIELDS)
    if unknown:
        raise TypeError(f"Unknown demographic fields: {', '.join(sorted(unknown))}")
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
        birth_date=birth_date,
        sex=sex,
        source_id=source_id,
        **details,
    )
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


def _set_indexes(patient: Patient) -> None:
    patient.mrn_index = mrn_index(patient.mrn)
    patient.name_dob_index = name_dob_index(patient.family_name, patient.birth_date)
    patient.family_name_index = family_name_index(patient.family_name)
    patient.address_index = address_index(patient.address_line or "", patient.postal_code or "")


@transaction.atomic
def patient_update_demographics(*, actor: Any, patient_id: int, **changes: Any) -> list[str]:
    """Change registration data; returns the names of the fields that really changed."""
    _require(actor, Capability.EDIT_DEMOGRAPHICS)
    unknown = set(changes) - set(DEMOGRAPHIC_FIELDS)
    if unknown:
        raise TypeError(f"Unknown demographic fields: {', '.join(sorted(unknown))}")
    patient = Patient.objects.select_for_update().filter(pk=patient_id).first()
    if patient is None:
        raise RecordNotFound
    changed = [name for name, value in changes.items() if getattr(patient, name) != value]
    if not changed:
        return []
    if "mrn" in changed and Patient.objects.filter(mrn_index=mrn_index(changes["mrn"])).exclude(pk=patient_id).exists():
        raise DuplicatePatient({"mrn": "Another patient already has this MRN."})
    for name in changed:
        setattr(patient, name, changes[name])
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
    """Open an encounter (admission, emergency visit, appointment)."""
    _require(actor, Capability.ADMIT_PATIENT)
    if not Patient.objects.filter(pk=patient_id).exists():
        raise RecordNotFound
    if attending is not None and attending.role != Role.PHYSICIAN:
        raise ValidationError({"attending": "The attending must be a physician."})
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
def encounter_discharge(*, actor: Any, encounter_id: int, ends_at: datetime.datetime | None = None) -> Encounter:
    """Close an open encounter."""
    _require(actor, Capability.ADMIT_PATIENT)
    encounter = Encounter.objects.select_for_update().filter(pk=encounter_id).first()
    if encounter is None:
        raise RecordNotFound
    if encounter.status not in (Encounter.Status.PLANNED, Encounter.Status.IN_PROGRESS):
        raise ValidationError("This encounter is already closed.")
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
def care_assignment_end(*, actor: Any, assignment_id: int) -> CareAssignment:
    """Take someone off a care team now; their access to the chart ends with it."""
    _require(actor, Capability.ASSIGN_CARE_TEAM)
    assignment = CareAssignment.objects.select_for_update().filter(pk=assignment_id, ends_at__isnull=True).first()
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


# --- Clinical work --------------------------------------------------------------------------------


@transaction.atomic
def order_place(
    *,
    actor: Any,
    patient_id: int,
    kind: str,
    department: Department,
    description: str,
    code: str = "",
    reason: str = "",
    priority: str = Order.Priority.ROUTINE,
    encounter_id: int | None = None,
) -> Order:
    """A physician orders an imaging study or a laboratory test from a department."""
    _require(actor, Capability.PLACE_ORDER)
    _require_relationship(actor, patient_id, D.ORDERS)
    expected_kind = {Order.Kind.RADIOLOGY: Department.Kind.RADIOLOGY, Order.Kind.LAB: Department.Kind.LAB}.get(kind)
    if department.kind != expected_kind:
        raise ValidationError({"department": "Send the order to a department of the right kind."})
    order = Order(
        patient_id=patient_id,
        encounter_id=encounter_id,
        kind=kind,
        department=department,
        ordered_by=actor,
        description=description,
        code=code,
        reason=reason,
        priority=priority,
        ordered_at=timezone.now(),
    )
    _save(order, actor)
    _changed(
        Order,
        actor=actor,
        patient_id=patient_id,
        category=D.ORDERS,
        action="create",
        fields=("kind", "department", "description", "code", "reason", "priority"),
        object_id=order.pk,
    )
    return order


def _worklist_order(actor: Any, order_id: int) -> Order:
    decision, row = order_access(actor, order_id)
    if row is None:
        if decision.status == 403:
            raise PermissionDenied("Your role does not allow this.")
        raise RecordNotFound
    return Order.objects.select_for_update().get(pk=row.pk)


@transaction.atomic
def order_complete(*, actor: Any, order_id: int) -> Order:
    """Radiology or lab marks an order of its department done; the order then closes their access."""
    _require(actor, Capability.COMPLETE_ORDER)
    order = _worklist_order(actor, order_id)
    order.status = Order.Status.COMPLETED
    order.completed_at = timezone.now()
    order.completed_by = actor
    _save(order, actor)
    _changed(
        Order,
        actor=actor,
        patient_id=order.patient_id,
        category=D.ORDERS,
        action="update",
        fields=("status", "completed_at", "completed_by"),
        object_id=order.pk,
    )
    return order


@transaction.atomic
def order_cancel(*, actor: Any, order_id: int) -> Order:
    """The ordering physician (or another on the care team) cancels an open order."""
    _require(actor, Capability.PLACE_ORDER)
    order = Order.objects.select_for_update().filter(pk=order_id, status__in=Order.OPEN_STATUSES).first()
    if order is None:
        raise RecordNotFound
    _require_relationship(actor, order.patient_id, D.ORDERS)
    order.status = Order.Status.CANCELLED
    _save(order, actor)
    _changed(
        Order,
        actor=actor,
        patient_id=order.patient_id,
        category=D.ORDERS,
        action="update",
        fields=("status",),
        object_id=order.pk,
    )
    return order


@transaction.atomic
def observation_record(
    *,
    actor: Any,
    patient_id: int,
    category: str,
    display: str,
    value: str,
    unit: str = "",
    loinc_code: str = "",
    effective_at: datetime.datetime | None = None,
    order_id: int | None = None,
    encounter_id: int | None = None,
) -> Observation:
    """Record a vital sign (nurses, physicians) or a result against an order (lab, radiology).

    Adding data needs the relationship but not the step-up: a nurse entering vitals is not shown anything.
    """
    if order_id is not None:
        _require(actor, Capability.ENTER_RESULT)
        order = _worklist_order(actor, order_id) if actor is not None else Order.objects.get(pk=order_id)
        if order.patient_id != patient_id:
            raise RecordNotFound
        if order.status == Order.Status.OPEN:
            order.status = Order.Status.IN_PROGRESS
            order.save(update_fields=["status"])
    else:
        _require(actor, Capability.RECORD_VITALS)
        _require_relationship(actor, patient_id, D.OBSERVATIONS)
    observation = Observation(
        patient_id=patient_id,
        encounter_id=encounter_id,
        order_id=order_id,
        category=category,
        display=display,
        value=value,
        unit=unit,
        loinc_code=loinc_code,
        effective_at=effective_at or timezone.now(),
        recorded_by=actor,
    )
    _save(observation, actor)
    _changed(
        Observation,
        actor=actor,
        patient_id=patient_id,
        category=D.OBSERVATIONS,
        action="create",
        fields=("category", "display", "value", "unit", "loinc_code", "effective_at"),
        object_id=observation.pk,
    )
    return observation


@transaction.atomic
def note_write(*, actor: Any, patient_id: int, kind: str, text: str, order_id: int | None = None) -> ClinicalNote:
    """Sign a clinical note (a radiology report goes against its order)."""
    _require(actor, Capability.WRITE_NOTE)
    if order_id is not None:
        order = _worklist_order(actor, order_id)
        if order.patient_id != patient_id:
            raise RecordNotFound
    else:
        _require_relationship(actor, patient_id, D.NOTES)
    note = ClinicalNote(
        patient_id=patient_id, order_id=order_id, kind=kind, author=actor, text=text, signed_at=timezone.now()
    )
    _save(note, actor)
    _changed(
        ClinicalNote,
        actor=actor,
        patient_id=patient_id,
        category=D.NOTES,
        action="create",
        fields=("kind", "text"),
        object_id=note.pk,
    )
    return note


@transaction.atomic
def note_amend(*, actor: Any, note_id: int, text: str) -> ClinicalNote:
    """Correct a signed note by appending an amendment; the original stays as it was signed."""
    _require(actor, Capability.WRITE_NOTE)
    original = ClinicalNote.objects.filter(pk=note_id).only("id", "patient_id", "kind", "author_id", "order_id").first()
    if original is None:
        raise RecordNotFound
    _require_relationship(actor, original.patient_id, D.NOTES)
    if original.author_id != actor.pk:
        raise PermissionDenied("Only the author may amend a note; write a new note instead.")
    amendment = ClinicalNote(
        patient_id=original.patient_id,
        order_id=original.order_id,
        kind=original.kind,
        author=actor,
        text=text,
        signed_at=timezone.now(),
        amends_id=original.pk,
    )
    _save(amendment, actor)
    _changed(
        ClinicalNote,
        actor=actor,
        patient_id=original.patient_id,
        category=D.NOTES,
        action="amend",
        fields=("text", "amends"),
        object_id=amendment.pk,
    )
    return amendment


def _chart_entry_add(
    *, actor: Any, capability: Capability, category: DataCategory, entry: Any, fields: tuple[str, ...]
) -> Any:
    """The shape of every "add an entry to this patient's chart" service: role, relationship, save, signal."""
    _require(actor, capability)
    _require_relationship(actor, entry.patient_id, category)
    _save(entry, actor)
    _changed(
        type(entry),
        actor=actor,
        patient_id=entry.patient_id,
        category=category,
        action="create",
        fields=fields,
        object_id=entry.pk,
    )
    return entry


@transaction.atomic
def medication_prescribe(*, actor: Any, patient_id: int, display: str, dosage: str, code: str = "") -> Medication:
    """A physician prescribes a medication."""
    entry = Medication(
        patient_id=patient_id,
        display=display,
        dosage=dosage,
        code=code,
        prescribed_by=actor,
        prescribed_at=timezone.now(),
    )
    return _chart_entry_add(
        actor=actor,
        capability=Capability.PRESCRIBE,
        category=D.MEDICATIONS,
        entry=entry,
        fields=("display", "dosage", "code"),
    )


@transaction.atomic
def medication_administer(*, actor: Any, medication_id: int, dose: str, note: str = "") -> MedicationAdministration:
    """A nurse records a dose given of an active prescription."""
    _require(actor, Capability.ADMINISTER_MEDICATION)
    medication = Medication.objects.filter(pk=medication_id).only("id", "patient_id", "status").first()
    if medication is None:
        raise RecordNotFound
    _require_relationship(actor, medication.patient_id, D.MEDICATIONS)
    if medication.status != Medication.Status.ACTIVE:
        raise ValidationError("This prescription is not active.")
    given = MedicationAdministration(
        medication_id=medication.pk,
        patient_id=medication.patient_id,
        administered_by=actor,
        administered_at=timezone.now(),
        dose=dose,
        note=note,
    )
    _save(given, actor)
    _changed(
        MedicationAdministration,
        actor=actor,
        patient_id=medication.patient_id,
        category=D.MEDICATIONS,
        action="administer",
        fields=("dose", "note"),
        object_id=given.pk,
    )
    return given


@transaction.atomic
def condition_record(
    *, actor: Any, patient_id: int, display: str, code: str = "", onset_date: datetime.date | None = None
) -> Condition:
    """A physician records a diagnosis."""
    entry = Condition(
        patient_id=patient_id,
        display=display,
        code=code,
        onset_date=onset_date,
        recorded_by=actor,
        recorded_at=timezone.now(),
    )
    return _chart_entry_add(
        actor=actor,
        capability=Capability.RECORD_DIAGNOSIS,
        category=D.CONDITIONS,
        entry=entry,
        fields=("display", "code", "onset_date"),
    )


@transaction.atomic
def allergy_record(*, actor: Any, patient_id: int, substance: str, reaction: str = "", severity: str = "") -> Allergy:
    """A physician or nurse records an allergy."""
    entry = Allergy(
        patient_id=patient_id,
        substance=substance,
        reaction=reaction,
        severity=severity,
        recorded_by=actor,
        recorded_at=timezone.now(),
    )
    return _chart_entry_add(
        actor=actor,
        capability=Capability.RECORD_ALLERGY,
        category=D.ALLERGIES,
        entry=entry,
        fields=("substance", "reaction", "severity"),
    )


@transaction.atomic
def attachment_upload(
    *,
    actor: Any,
    order_id: int,
    source: IO[bytes],
    filename: str,
    content_type: str,
    description: str = "",
    max_bytes: int,
) -> Attachment:
    """Radiology uploads an image against an open order; the file is encrypted as it is written."""
    from records import files

    _require(actor, Capability.UPLOAD_IMAGE)
    order = _worklist_order(actor, order_id)
    # The row identity comes first: the file is bound to the row that will point at it.
    row_uid = uuid.uuid4()
    stored = files.store_encrypted(source, max_bytes=max_bytes, row_uid=row_uid)
    try:
        attachment = Attachment(
            row_uid=row_uid,
            patient_id=order.patient_id,
            order_id=order.pk,
            kind=Attachment.Kind.IMAGING,
            filename=filename,
            content_type=content_type,
            description=description,
            sha256=stored.sha256,
            size=stored.size,
            storage_name=stored.storage_name,
            key_id=stored.key_id,
            uploaded_by=actor,
            uploaded_at=timezone.now(),
        )
        _save(attachment, actor)
        if order.status == Order.Status.OPEN:
            order.status = Order.Status.IN_PROGRESS
            order.save(update_fields=["status"])
        _changed(
            Attachment,
            actor=actor,
            patient_id=order.patient_id,
            category=D.IMAGING,
            action="create",
            fields=("filename", "content_type", "description"),
            object_id=attachment.pk,
        )
    except BaseException:
        # Nothing half-saved: the row did not commit, so the encrypted file must go too.
        files.delete_stored(stored.storage_name)
        raise
    return attachment
