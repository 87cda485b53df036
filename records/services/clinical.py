"""Clinical entries on a chart: observations and results, notes and amendments, medications, diagnoses, allergies."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.roles import Capability, DataCategory
from records.models import (
    Allergy,
    ClinicalNote,
    Condition,
    Medication,
    MedicationAdministration,
    Observation,
    Order,
    Patient,
)
from records.services.base import (
    RecordNotFound,
    _changed,
    _chart_entry_add,
    _require,
    _require_relationship,
    _save,
    _worklist_order,
)
from records.services.safety import (
    AllergyWarning,
    allergy_conflicts,
    check_allergy_not_duplicate,
    interpret_result,
    resolve_allergen,
    resolve_drug,
)
from records.terminology import lab_test_by_name

D = DataCategory


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
    return _observation_create(
        actor=actor,
        patient_id=patient_id,
        patient_read=actor is not None or order_id is not None,
        category=category,
        display=display,
        value=value,
        unit=unit,
        loinc_code=loinc_code,
        effective_at=effective_at,
        order_id=order_id,
        encounter_id=encounter_id,
    )


@transaction.atomic
def vitals_record(
    *,
    actor: Any,
    patient_id: int,
    readings: Sequence[tuple[str, str, str, str]],
    effective_at: datetime.datetime | None = None,
) -> list[Observation]:
    """Record a set of vital signs taken together: (LOINC code, display, unit, value) per reading.

    All of it or none of it, with one capability and relationship check and one savepoint for the set
    (each reading through ``observation_record`` checked the relationship again, in a savepoint of its
    own: issue 11); each reading is then stored, flagged and recorded as ``observation_record`` does.
    """
    _require(actor, Capability.RECORD_VITALS)
    _require_relationship(actor, patient_id, D.OBSERVATIONS)
    taken_at = effective_at or timezone.now()  # one time for the set: the chart shows it as one row
    return [
        _observation_create(
            actor=actor,
            patient_id=patient_id,
            patient_read=actor is not None,
            category=Observation.Category.VITAL_SIGNS,
            display=display,
            value=value,
            unit=unit,
            loinc_code=loinc,
            effective_at=taken_at,
            order_id=None,
            encounter_id=None,
        )
        for loinc, display, unit, value in readings
    ]


def _observation_create(
    *,
    actor: Any,
    patient_id: int,
    patient_read: bool,
    category: str,
    display: str,
    value: str,
    unit: str,
    loinc_code: str,
    effective_at: datetime.datetime | None,
    order_id: int | None,
    encounter_id: int | None,
) -> Observation:
    """Store one observation once the caller has checked the capability (marking the transaction) and
    the relationship or order; ``patient_read``: that check read the patient's row."""
    # A known numeric test (records/terminology.py) takes a number in its unit, and is flagged; a
    # result typed with a listed test's exact name but no code is that test.
    if not loinc_code and (named := lab_test_by_name(display)) is not None:
        loinc_code = named.loinc
    checked = interpret_result(loinc_code=loinc_code, value=value, unit=unit)
    observation = Observation(
        patient_id=patient_id,
        encounter_id=encounter_id,
        order_id=order_id,
        category=category,
        display=display,
        value=checked.value,
        unit=checked.unit,
        loinc_code=loinc_code,
        interpretation=checked.interpretation,
        reference_range=checked.reference_range,
        effective_at=effective_at or timezone.now(),
        recorded_by=actor,
    )
    # _require marked the transaction; the order, the actor and (through the relationship check or
    # the order) the patient were just read. A system caller's patient was not: it is validated.
    known = ("order", "recorded_by", "patient") if patient_read else ("order", "recorded_by")
    _save(observation, actor, marked=True, known=known)
    _changed(
        Observation,
        actor=actor,
        patient_id=patient_id,
        category=D.OBSERVATIONS,
        action="create",
        fields=(
            "category",
            "display",
            "value",
            "unit",
            "loinc_code",
            "interpretation",
            "reference_range",
            "effective_at",
        ),
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
def note_amend(*, actor: Any, patient_id: int, note_id: int, text: str) -> ClinicalNote:
    """Correct a signed note of ``patient_id`` by appending an amendment; the original stays as signed.

    A note of another patient is RecordNotFound (a 404), as if it did not exist.
    """
    _require(actor, Capability.WRITE_NOTE)
    original = (
        ClinicalNote.objects.filter(pk=note_id, patient_id=patient_id)
        .only("id", "patient_id", "kind", "author_id", "order_id")
        .first()
    )
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


@transaction.atomic
def medication_prescribe(
    *,
    actor: Any,
    patient_id: int,
    display: str,
    dosage: str,
    code: str = "",
    allergy_override_reason: str = "",
    frequency: str = "",
) -> Medication:
    """A physician prescribes a medication, checked against the patient's recorded allergies.

    A drug that is, or belongs to a class of, a recorded allergen raises ``AllergyWarning`` (nothing
    is saved) unless ``allergy_override_reason`` says why it is prescribed anyway; the reason is stored
    with the prescription and the change event names the override field (never its value).
    ``frequency`` (``Medication.Frequency``) is the schedule the ward's "due medications" follow.
    """
    _require(actor, Capability.PRESCRIBE)
    _require_relationship(actor, patient_id, D.MEDICATIONS)
    coded = resolve_drug(code=code, display=display)
    reason = allergy_override_reason.strip()
    conflicts = allergy_conflicts(patient_id=patient_id, medication=coded)
    if conflicts and not reason:
        raise AllergyWarning(conflicts)
    entry = Medication(
        patient_id=patient_id,
        display=coded.display,
        dosage=dosage,
        code=coded.code,
        # Kept only when a warning was actually overridden: a stray reason means nothing.
        allergy_override_reason=reason if conflicts else "",
        frequency=frequency,
        prescribed_by=actor,
        prescribed_at=timezone.now(),
    )
    fields = ("display", "dosage", "code", "frequency", *(("allergy_override_reason",) if conflicts else ()))
    return _chart_entry_add(
        actor=actor, capability=Capability.PRESCRIBE, category=D.MEDICATIONS, entry=entry, fields=fields
    )


@transaction.atomic
def medication_administer(
    *, actor: Any, patient_id: int, medication_id: int, dose: str, note: str = ""
) -> MedicationAdministration:
    """A nurse records a dose given of an active prescription of ``patient_id``.

    A prescription of another patient is RecordNotFound (a 404), as if it did not exist.
    """
    _require(actor, Capability.ADMINISTER_MEDICATION)
    medication = (
        Medication.objects.filter(pk=medication_id, patient_id=patient_id).only("id", "patient_id", "status").first()
    )
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
        recorded_by=actor,
        recorded_at=timezone.now(),
    )
    entry.onset_date = onset_date  # the decrypted type, set apart as in patient_register
    return _chart_entry_add(
        actor=actor,
        capability=Capability.RECORD_DIAGNOSIS,
        category=D.CONDITIONS,
        entry=entry,
        fields=("display", "code", "onset_date"),
    )


@transaction.atomic
def allergy_record(
    *, actor: Any, patient_id: int, substance: str, reaction: str = "", severity: str = "", code: str = ""
) -> Allergy:
    """A physician or nurse records an allergy, coded when it is a listed allergen; a duplicate is refused."""
    _require(actor, Capability.RECORD_ALLERGY)
    _require_relationship(actor, patient_id, D.ALLERGIES)
    # Two people adding the same allergy at once: the second waits here, then sees the first.
    Patient.objects.select_for_update().filter(pk=patient_id).values_list("pk", flat=True).first()
    allergen = resolve_allergen(code=code, substance=substance)
    check_allergy_not_duplicate(patient_id=patient_id, allergen=allergen)
    entry = Allergy(
        patient_id=patient_id,
        substance=allergen.display,
        code=allergen.code,
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
        fields=("substance", "code", "reaction", "severity"),
    )
