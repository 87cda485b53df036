"""The appointment schedule: a department's day (the front desk) or a physician's own day."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from accounts.models import Department
from accounts.roles import Capability, DataCategory, has_capability
from records.models import Appointment
from records.permissions import AccessDecision, schedule_scope
from records.selectors.access import SUMMARY_FIELDS, Access, AccessRefused, Steps, _name, _summary, in_steps
from records.selectors.read_models import PatientSummary

D = DataCategory

# A day's schedule shows at most this many appointments (a busy clinic books about a hundred).
SCHEDULE_LIMIT = 200


@dataclass(frozen=True)
class AppointmentRow:
    id: int
    patient: PatientSummary
    department: str
    clinician: str
    starts_at: datetime.datetime
    duration_minutes: int
    reason: str
    status: str
    status_label: str
    encounter_id: int | None

    @property
    def ends_at(self) -> datetime.datetime:
        return self.starts_at + datetime.timedelta(minutes=self.duration_minutes)


@dataclass(frozen=True)
class Schedule:
    day: datetime.date
    department_id: int | None
    rows: list[AppointmentRow]
    total: int
    # The departments whose schedules this user may open (id, name); empty for a physician's own.
    departments: list[tuple[int, str]]
    own: bool  # a physician's own appointments, whichever department


def _day_bounds(day: datetime.date) -> tuple[datetime.datetime, datetime.datetime]:
    start = timezone.make_aware(datetime.datetime.combine(day, datetime.time.min))
    return start, start + datetime.timedelta(days=1)


def schedule_departments(*, actor: Any) -> list[tuple[int, str]]:
    """The departments whose schedule ``actor`` may open and book into (id, name)."""
    scope = schedule_scope(actor)
    if scope is None or scope.clinician_id is not None:
        return []
    departments = Department.objects.exclude(kind=Department.Kind.ADMINISTRATION)
    if scope.department_id is not None:
        departments = Department.objects.filter(pk=scope.department_id)
    return list(departments.order_by("name").values_list("id", "name"))


@in_steps
def day_schedule(
    *, actor: Any, day: datetime.date, department_id: int | None = None, limit: int = SCHEDULE_LIMIT
) -> Steps[Schedule]:
    """The appointments of ``day`` the user may see, in time order, recorded as one list access before
    anything is decrypted. A department outside the user's schedules is AccessRefused (404)."""
    scope = schedule_scope(actor)
    if scope is None:
        raise AccessRefused(AccessDecision.forbidden("role_without_schedule"))
    if department_id is not None and not scope.allows_department(department_id):
        raise AccessRefused(AccessDecision.not_found())
    start, end = _day_bounds(day)
    appointments = Appointment.objects.filter(scope.appointments(), starts_at__gte=start, starts_at__lt=end)
    if department_id is not None and scope.clinician_id is None:
        appointments = appointments.filter(department_id=department_id)
    found = list(appointments.order_by("starts_at", "id").values_list("pk", "patient_id")[:limit])
    rows: list[AppointmentRow] = []
    if found:
        booking = has_capability(actor, Capability.BOOK_APPOINTMENT)
        yield Access(
            actor=actor,
            patient_ids=sorted({patient_id for _, patient_id in found}),
            category=(D.DEMOGRAPHICS, D.ENCOUNTERS),
            action="list",
            purpose="registration" if booking else "treatment",
            detail={"list": "schedule"},
        )
        loaded = (
            Appointment.objects.filter(pk__in=[pk for pk, _ in found])
            .select_related("patient", "department", "clinician")
            .only(
                *(f.name for f in Appointment._meta.concrete_fields),
                *(f"patient__{name}" for name in SUMMARY_FIELDS),
                "department__name",
                *(f"clinician__{name}" for name in ("first_name", "last_name", "username", "role")),
            )
            .order_by("starts_at", "id")
        )
        rows = [
            AppointmentRow(
                a.pk,
                _summary(a.patient),
                a.department.name,
                _name(a.clinician),
                a.starts_at,
                a.duration_minutes,
                a.reason,
                a.status,
                a.get_status_display(),
                a.encounter_id,
            )
            for a in loaded
        ]
    total = appointments.count() if len(found) == limit else len(found)
    return Schedule(
        day=day,
        department_id=department_id,
        rows=rows,
        total=total,
        departments=schedule_departments(actor=actor),
        own=scope.clinician_id is not None,
    )
