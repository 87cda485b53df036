"""Writes made by an interface (an HL7 v2 feed): registration, stays, results and orders from another system.

A message from the hospital's interface engine is not a person at a desk: it has no care
relationship to check, and it names no user of ours. So these services act for one kind of
actor only, an *interface service account* (``interface_account_check``): an active account
that cannot sign in (no usable password) and is not an operator. Everything else is the write
path as usual: validation with ``full_clean()``, the actor marker, and a ``patient_data_changed``
signal in the same transaction naming the interface account, so every ingested value is a change
event. Patient values never appear in an exception raised here.

Callers (exchange/hl7/) run each message in one transaction; these functions are atomic on
their own as well.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import Department
from accounts.roles import DataCategory
from records.crypto import mrn_index
from records.db import mark_actor
from records.models import Encounter, Observation, Order, Patient
from records.services.base import RecordNotFound, _changed, _save
from records.services.orders import DEPARTMENT_FOR_ORDER_KIND
from records.services.patients import _check_demographic_fields, _demographics_update, _set_indexes
from records.services.safety import interpret_result

D = DataCategory

# Flags an interface may send with a result (OBX-8) that mean what records/terminology.py means.
INTERFACE_FLAGS = frozenset({"N", "L", "H", "LL", "HH"})


def interface_account_check(actor: Any) -> None:
    """Refuse any actor that is not an interface service account; mark the transaction as its.

    An interface account is active, is not an operator (superuser) and has no usable password, so
    nobody can sign in as it and no person's account can be used to push messages.
    """
    if (
        actor is None
        or getattr(actor, "pk", None) is None
        or not actor.is_active
        or actor.is_superuser
        or actor.has_usable_password()
    ):
        raise PermissionDenied("Only an interface service account (active, no password) may write messages.")
    mark_actor(actor)


def interface_patient_find(*, actor: Any, mrn: str) -> int | None:
    """The id of the patient with this MRN (through its blind index), or None; nothing is decrypted."""
    interface_account_check(actor)
    return Patient.objects.filter(mrn_index=mrn_index(mrn.strip())).values_list("pk", flat=True).first()


@dataclass(frozen=True)
class Upserted:
    patient_id: int
    created: bool
    changed: tuple[str, ...]


@transaction.atomic
def interface_patient_upsert(
    *,
    actor: Any,
    mrn: str,
    given_name: str,
    family_name: str,
    birth_date: datetime.date,
    sex: str,
    **details: Any,
) -> Upserted:
    """Register the patient with this MRN, or bring the registration up to date with the message.

    The MRN is the key (the sending system and ours share it), so no surname + birth-date
    confirmation is asked: the feed is the registration desk of another system. Returns what was
    done; the change event names the fields, never their values.
    """
    interface_account_check(actor)
    _check_demographic_fields(details)
    values: dict[str, Any] = {
        "given_name": given_name.strip(),
        "family_name": family_name.strip(),
        "birth_date": birth_date,
        "sex": sex,
        **details,
    }
    patient = Patient.objects.select_for_update().filter(mrn_index=mrn_index(mrn.strip())).first()
    if patient is None:
        patient = Patient(mrn=mrn.strip())
        for name, value in values.items():
            setattr(patient, name, value)
        _set_indexes(patient)
        _save(patient, actor)
        fields = ("mrn", *values)
        _changed(
            Patient,
            actor=actor,
            patient_id=patient.pk,
            category=D.DEMOGRAPHICS,
            action="create",
            fields=fields,
            object_id=patient.pk,
        )
        return Upserted(patient.pk, True, tuple(fields))
    changed = _demographics_update(patient, values, actor)
    return Upserted(patient.pk, False, tuple(changed))


@transaction.atomic
def interface_encounter_open(
    *, actor: Any, patient_id: int, kind: str, reason: str = "", starts_at: datetime.datetime | None = None
) -> Encounter:
    """Open a stay or visit reported by the feed (ADT A01 admit, A04 registration with a visit).

    As at the desk, a patient is in one bed at a time: a second inpatient stay is refused.
    """
    interface_account_check(actor)
    if not Patient.objects.select_for_update().filter(pk=patient_id).exists():
        raise RecordNotFound
    if (
        kind == Encounter.Kind.INPATIENT
        and Encounter.objects.filter(
            patient_id=patient_id, kind=Encounter.Kind.INPATIENT, status=Encounter.Status.IN_PROGRESS
        ).exists()
    ):
        raise ValidationError({"kind": "This patient already has an inpatient stay in progress."})
    encounter = Encounter(
        patient_id=patient_id,
        kind=kind,
        status=Encounter.Status.IN_PROGRESS,
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
        fields=("kind", "reason", "starts_at"),
        object_id=encounter.pk,
    )
    return encounter


@transaction.atomic
def interface_encounters_close(*, actor: Any, patient_id: int, ends_at: datetime.datetime | None = None) -> int:
    """Close the patient's open stays (ADT A03 discharge); returns how many were closed (0 is no error)."""
    interface_account_check(actor)
    open_stays = Encounter.objects.select_for_update().filter(
        patient_id=patient_id, status__in=(Encounter.Status.PLANNED, Encounter.Status.IN_PROGRESS)
    )
    closed = 0
    for encounter in open_stays:
        encounter.status = Encounter.Status.FINISHED
        # A discharge time before the admission (clocks of two systems) closes the stay as it opens.
        encounter.ends_at = max(ends_at or timezone.now(), encounter.starts_at)
        _save(encounter, actor)
        _changed(
            Encounter,
            actor=actor,
            patient_id=patient_id,
            category=D.ENCOUNTERS,
            action="update",
            fields=("status", "ends_at"),
            object_id=encounter.pk,
        )
        closed += 1
    return closed


@transaction.atomic
def interface_result_record(
    *,
    actor: Any,
    patient_id: int,
    display: str,
    value: str,
    unit: str = "",
    loinc_code: str = "",
    category: str = Observation.Category.LABORATORY,
    status: str = Observation.Status.FINAL,
    effective_at: datetime.datetime | None = None,
    flag: str = "",
    reference_range: str = "",
) -> Observation:
    """Record a result sent by a laboratory or another system (ORU^R01), checked like a result typed in.

    A known numeric test (records/terminology.py) must be a plausible number in its unit and is
    flagged by our reference range; any other result keeps the sender's flag (when it is one of
    N, L, H, LL, HH) and range.
    """
    interface_account_check(actor)
    if not Patient.objects.filter(pk=patient_id).exists():
        raise RecordNotFound
    checked = interpret_result(loinc_code=loinc_code, value=value, unit=unit)
    interpretation = checked.interpretation or (flag if flag in INTERFACE_FLAGS else "")
    observation = Observation(
        patient_id=patient_id,
        category=category,
        status=status,
        display=display,
        value=checked.value,
        unit=checked.unit,
        loinc_code=loinc_code,
        interpretation=interpretation,
        reference_range=checked.reference_range or reference_range,
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
        fields=(
            "category",
            "status",
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
def interface_order_place(
    *,
    actor: Any,
    patient_id: int,
    kind: str,
    department: Department,
    description: str,
    code: str = "",
    reason: str = "",
    priority: str = Order.Priority.ROUTINE,
    ordered_at: datetime.datetime | None = None,
) -> Order:
    """Place an order received from another system (ORM^O01) on the worklist of ``department``.

    The order is recorded as placed by the interface account (the ordering clinician of the other
    system is not a user here); it lets that department open the chart as any open order does.
    """
    interface_account_check(actor)
    if not Patient.objects.filter(pk=patient_id).exists():
        raise RecordNotFound
    if department.kind != DEPARTMENT_FOR_ORDER_KIND.get(kind):
        raise ValidationError({"department": "Send the order to a department of the right kind."})
    order = Order(
        patient_id=patient_id,
        kind=kind,
        department=department,
        ordered_by=actor,
        description=description,
        code=code,
        reason=reason,
        priority=priority,
        ordered_at=ordered_at or timezone.now(),
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
