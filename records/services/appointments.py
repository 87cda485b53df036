"""Appointments: booking, cancelling and checking in (the front desk), each in one transaction."""

from __future__ import annotations

import datetime
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import Department, User
from accounts.roles import Capability, DataCategory, Role
from records.models import Appointment, Encounter, Patient
from records.permissions import ScheduleScope, schedule_scope
from records.services.base import RecordNotFound, _changed, _require, _save
from records.services.patients import encounter_admit

D = DataCategory

# The longest visit a schedule holds; also how far back a booking looks for a clashing slot.
MAX_DURATION_MINUTES = 8 * 60
# An appointment is a visit still to come: a booking may start at most this far in the past (the
# minutes the desk needs to fill in the form for "now").
BOOKING_GRACE = datetime.timedelta(minutes=5)
# Appointments that hold a clinician's slot.
HOLDS_SLOT = (Appointment.Status.BOOKED, Appointment.Status.CHECKED_IN)


class AppointmentConflict(ValidationError):
    """The appointment is not in a state that allows this (already checked in, cancelled): a 409."""


def _scope(actor: Any) -> ScheduleScope:
    scope = schedule_scope(actor)
    if scope is None:
        raise PermissionDenied("Your role does not allow this.")
    return scope


@transaction.atomic
def appointment_book(
    *,
    actor: Any,
    patient_id: int,
    department_id: int,
    starts_at: datetime.datetime,
    duration_minutes: int,
    clinician: User | None = None,
    reason: str = "",
) -> Appointment:
    """Book ``patient_id`` into ``department``'s schedule.

    Refused with a message for the form: a time in the past, a duration of zero or less (or over
    ``MAX_DURATION_MINUTES``), a clinician who is not a physician, a department outside the desk's
    schedule, and a slot that overlaps another booking of the same clinician (the clinician's row is
    locked first, so two desks booking the same slot at once cannot both pass the check).
    """
    _require(actor, Capability.BOOK_APPOINTMENT)
    scope = _scope(actor) if actor is not None else None
    if not Patient.objects.filter(pk=patient_id).exists():
        raise RecordNotFound
    errors: dict[str, str] = {}
    if duration_minutes <= 0:
        errors["duration_minutes"] = "The duration must be at least one minute."
    elif duration_minutes > MAX_DURATION_MINUTES:
        errors["duration_minutes"] = f"An appointment lasts at most {MAX_DURATION_MINUTES} minutes."
    if starts_at < timezone.now() - BOOKING_GRACE:
        errors["starts_at"] = "This time is in the past: book a time still to come."
    department = Department.objects.filter(pk=department_id).first()
    if department is None or (scope is not None and not scope.allows_department(department.pk)):
        errors["department"] = "You book appointments for your own department only."
    if clinician is not None and clinician.role != Role.PHYSICIAN:
        errors["clinician"] = "The clinician must be a physician."
    if errors:
        raise ValidationError(errors)
    if clinician is not None:
        User.objects.select_for_update().filter(pk=clinician.pk).values_list("pk", flat=True).first()
        ends_at = starts_at + datetime.timedelta(minutes=duration_minutes)
        nearby = Appointment.objects.filter(
            clinician_id=clinician.pk,
            status__in=HOLDS_SLOT,
            starts_at__lt=ends_at,
            starts_at__gt=starts_at - datetime.timedelta(minutes=MAX_DURATION_MINUTES),
        ).values_list("starts_at", "duration_minutes")
        if any(start + datetime.timedelta(minutes=minutes) > starts_at for start, minutes in nearby):
            raise ValidationError(
                {"starts_at": "The clinician already has an appointment at this time: choose another time."}
            )
    appointment = Appointment(
        patient_id=patient_id,
        department=department,
        clinician=clinician,
        starts_at=starts_at,
        duration_minutes=duration_minutes,
        reason=reason,
        booked_by=actor,
    )
    _save(appointment, actor)
    _changed(
        Appointment,
        actor=actor,
        patient_id=patient_id,
        category=D.ENCOUNTERS,
        action="create",
        fields=("department", "clinician", "starts_at", "duration_minutes", "reason"),
        object_id=appointment.pk,
    )
    return appointment


def _appointment_for_update(actor: Any, patient_id: int, appointment_id: int) -> Appointment:
    """The appointment of ``patient_id`` in the desk's schedule, locked; anything else is a 404."""
    _require(actor, Capability.BOOK_APPOINTMENT)
    scope = _scope(actor)
    appointment = (
        Appointment.objects.select_for_update()
        .filter(scope.appointments(), pk=appointment_id, patient_id=patient_id)
        .first()
    )
    if appointment is None:
        raise RecordNotFound
    return appointment


@transaction.atomic
def appointment_cancel(*, actor: Any, patient_id: int, appointment_id: int) -> Appointment:
    """Cancel a booked appointment; one already checked in or cancelled is AppointmentConflict."""
    appointment = _appointment_for_update(actor, patient_id, appointment_id)
    if appointment.status != Appointment.Status.BOOKED:
        raise AppointmentConflict(
            f"This appointment is {appointment.get_status_display().lower()}: it cannot be cancelled."
        )
    appointment.status = Appointment.Status.CANCELLED
    _save(appointment, actor)
    _changed(
        Appointment,
        actor=actor,
        patient_id=patient_id,
        category=D.ENCOUNTERS,
        action="cancel",
        fields=("status",),
        object_id=appointment.pk,
    )
    return appointment


@transaction.atomic
def appointment_check_in(*, actor: Any, patient_id: int, appointment_id: int) -> Appointment:
    """The patient has arrived: open the outpatient encounter (department and attending from the
    appointment) and link it, in one transaction. A second check-in, or one of a cancelled or missed
    appointment, is AppointmentConflict and nothing is written."""
    appointment = _appointment_for_update(actor, patient_id, appointment_id)
    if appointment.status == Appointment.Status.CHECKED_IN:
        raise AppointmentConflict("This appointment is already checked in.")
    if appointment.status != Appointment.Status.BOOKED:
        raise AppointmentConflict(
            f"This appointment is {appointment.get_status_display().lower()}: book a new one to check the patient in."
        )
    encounter = encounter_admit(
        actor=actor,
        patient_id=patient_id,
        kind=Encounter.Kind.AMBULATORY,
        department=appointment.department,
        attending=appointment.clinician,
        reason=appointment.reason,
    )
    appointment.status = Appointment.Status.CHECKED_IN
    appointment.encounter = encounter
    _save(appointment, actor)
    _changed(
        Appointment,
        actor=actor,
        patient_id=patient_id,
        category=D.ENCOUNTERS,
        action="check_in",
        fields=("status", "encounter"),
        object_id=appointment.pk,
    )
    return appointment
