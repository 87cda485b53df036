"""Today's work on the clinical dashboards: the physician's results and orders, the nurse's ward, the
department's worklist counts, the front desk's arrivals. Each list is bounded, recorded as one list
access (before anything is decrypted), and costs a fixed number of queries whatever its length.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Exists, Max, OuterRef, QuerySet
from django.utils import timezone

from accounts.roles import Capability, ChartAccess, DataCategory, has_capability, policy_for
from records.models import (
    FREQUENCY_LABELS,
    SCHEDULE_HOURS,
    Encounter,
    Medication,
    MedicationAdministration,
    Observation,
    Order,
    Patient,
)
from records.permissions import ORDER_KIND_FOR_ROLE, schedule_scope
from records.selectors.access import SUMMARY_FIELDS, Access, Steps, _order_row, _summary, in_steps
from records.selectors.read_models import PatientSummary, WorklistRow
from records.selectors.results import _cared_for

D = DataCategory

# Rows a dashboard panel shows; the pages behind its links show the rest.
PANEL_ROWS = 8
# "New" results: orders completed within this window. A day covers a shift and the handover after it.
NEW_RESULTS_HOURS = 24
# A ward list never opens more stays than this (a large ward holds about 40 beds).
WARD_SCAN = 60
# A scheduled medication is listed as due when its next dose falls within this window, or is overdue:
# the hour ahead is what a nurse plans a medication round for.
DUE_WITHIN = datetime.timedelta(hours=1)
# At most this many active prescriptions of a ward are opened to find the due ones.
MEDICATION_SCAN = 400
# Vital signs are taken at least every 8 hours on a general ward (once a nursing shift, the usual
# minimum of early-warning-score observation); an inpatient without any for longer was missed.
VITALS_INTERVAL = datetime.timedelta(hours=8)


@dataclass(frozen=True)
class WardRow:
    patient: PatientSummary
    location: str
    admitted_at: datetime.datetime


@dataclass(frozen=True)
class DueMedicationRow:
    patient: PatientSummary
    medication: str
    dosage: str
    frequency: str
    due_at: datetime.datetime

    @property
    def overdue(self) -> bool:
        return self.due_at <= timezone.now()


@dataclass(frozen=True)
class MissingVitalsRow:
    patient: PatientSummary
    admitted_at: datetime.datetime
    last_vitals_at: datetime.datetime | None


@dataclass(frozen=True)
class ArrivalTodayRow:
    patient: PatientSummary
    kind: str
    department: str
    arrived_at: datetime.datetime
    status: str


@dataclass(frozen=True)
class UrgencyCounts:
    stat: int
    urgent: int
    routine: int

    @property
    def total(self) -> int:
        return self.stat + self.urgent + self.routine


def _patients(ids: set[int] | list[int]) -> dict[int, PatientSummary]:
    return {p.pk: _summary(p) for p in Patient.objects.filter(pk__in=set(ids)).only(*SUMMARY_FIELDS)}


def _order_rows(actor: Any, orders: QuerySet[Order], *, limit: int, list_name: str) -> Steps[list[WorklistRow]]:
    """The first ``limit`` of ``orders`` with their patients, recorded as one list access first."""
    found = list(orders.values_list("pk", "patient_id")[:limit])
    if not found:
        return []
    yield Access(
        actor=actor,
        patient_ids=sorted({patient_id for _, patient_id in found}),
        category=(D.DEMOGRAPHICS, D.ORDERS),
        action="list",
        purpose="treatment",
        detail={"list": list_name},
    )
    by_id = {
        o.pk: o for o in Order.objects.filter(pk__in=[pk for pk, _ in found]).select_related("department", "ordered_by")
    }
    patients = _patients({patient_id for _, patient_id in found})
    return [WorklistRow(_order_row(by_id[pk]), patients[patient_id]) for pk, patient_id in found]


@in_steps
def new_results_for_orderer(*, actor: Any, limit: int = PANEL_ROWS) -> Steps[list[WorklistRow]]:
    """Orders ``actor`` placed that were completed in the last NEW_RESULTS_HOURS, newest first, for
    patients they still care for (the chart's own rule: no relationship, no result)."""
    if policy_for(actor) is None or not has_capability(actor, Capability.PLACE_ORDER):
        return []
    now = timezone.now()
    orders = Order.objects.filter(
        _cared_for(actor, now),
        ordered_by_id=actor.pk,
        status=Order.Status.COMPLETED,
        completed_at__gte=now - datetime.timedelta(hours=NEW_RESULTS_HOURS),
    ).order_by("-completed_at", "-id")
    return (yield from _order_rows(actor, orders, limit=limit, list_name="new_results"))


@in_steps
def pending_orders_for_orderer(*, actor: Any, limit: int = PANEL_ROWS) -> Steps[tuple[list[WorklistRow], int]]:
    """Open and in-progress orders ``actor`` placed, oldest first (the longest wait on top), for
    patients they still care for; and how many there are."""
    if policy_for(actor) is None or not has_capability(actor, Capability.PLACE_ORDER):
        return [], 0
    orders = Order.objects.filter(
        _cared_for(actor, timezone.now()), ordered_by_id=actor.pk, status__in=Order.OPEN_STATUSES
    ).order_by("ordered_at", "id")
    rows = yield from _order_rows(actor, orders, limit=limit, list_name="pending_orders")
    return rows, (orders.count() if len(rows) == limit else len(rows))


def _ward_stays(actor: Any) -> QuerySet[Encounter] | None:
    """The in-progress inpatient stays on the nurse's ward, or None when ``actor`` has no ward."""
    policy = policy_for(actor)
    if policy is None or policy.chart_access != ChartAccess.CARE_TEAM_OR_WARD or actor.department_id is None:
        return None
    return Encounter.objects.filter(
        kind=Encounter.Kind.INPATIENT, status=Encounter.Status.IN_PROGRESS, department_id=actor.department_id
    )


@in_steps
def ward_list(*, actor: Any, limit: int = WARD_SCAN) -> Steps[tuple[list[WardRow], int]]:
    """The inpatients on the nurse's ward, longest stay first: patient, bed or location, admitted since."""
    stays = _ward_stays(actor)
    if stays is None:
        return [], 0
    found = list(stays.order_by("starts_at", "id").values_list("pk", "patient_id")[:limit])
    if not found:
        return [], 0
    yield Access(
        actor=actor,
        patient_ids=sorted({patient_id for _, patient_id in found}),
        category=(D.DEMOGRAPHICS, D.ENCOUNTERS),
        action="list",
        purpose="treatment",
        explanation="ward",
        detail={"list": "ward"},
    )
    by_id = {
        e.pk: e
        for e in Encounter.objects.filter(pk__in=[pk for pk, _ in found]).only("id", "row_uid", "starts_at", "location")
    }
    patients = _patients({patient_id for _, patient_id in found})
    rows = [WardRow(patients[patient_id], by_id[pk].location, by_id[pk].starts_at) for pk, patient_id in found]
    return rows, (stays.count() if len(found) == limit else len(found))


def _next_dose(medication: Medication, last_given: datetime.datetime | None) -> datetime.datetime | None:
    """When the next dose of ``medication`` is due, or None when it never is ("as needed", a single
    dose already given, no schedule recorded)."""
    frequency = medication.frequency or ""
    if frequency == Medication.Frequency.ONCE:
        return medication.prescribed_at if last_given is None else None
    hours = SCHEDULE_HOURS.get(frequency)
    if hours is None:
        return None
    return (last_given or medication.prescribed_at) + datetime.timedelta(hours=hours)


@in_steps
def due_medications(*, actor: Any, limit: int = PANEL_ROWS) -> Steps[list[DueMedicationRow]]:
    """Scheduled medications of the ward's inpatients whose next dose is due within DUE_WITHIN or
    overdue, most overdue first. Only the ward's active prescriptions are opened (decrypted), after
    one list access is recorded; six queries whatever the ward's size."""
    stays = _ward_stays(actor)
    if stays is None or not has_capability(actor, Capability.ADMINISTER_MEDICATION):
        return []
    ward_patients = list(stays.values_list("patient_id", flat=True)[:WARD_SCAN])
    active = list(
        Medication.objects.filter(patient_id__in=ward_patients, status=Medication.Status.ACTIVE)
        .order_by("id")
        .values_list("pk", "patient_id")[:MEDICATION_SCAN]
    )
    if not active:
        return []
    yield Access(
        actor=actor,
        patient_ids=sorted({patient_id for _, patient_id in active}),
        category=(D.DEMOGRAPHICS, D.MEDICATIONS),
        action="list",
        purpose="treatment",
        explanation="ward",
        detail={"list": "due_medications"},
    )
    ids = [pk for pk, _ in active]
    last_given: dict[int, datetime.datetime] = dict(
        MedicationAdministration.objects.filter(medication_id__in=ids)
        .values("medication_id")
        .annotate(last=Max("administered_at"))
        .values_list("medication_id", "last")
    )
    horizon = timezone.now() + DUE_WITHIN
    due: list[tuple[datetime.datetime, Medication]] = []
    for medication in Medication.objects.filter(pk__in=ids).only(
        "id", "row_uid", "patient_id", "display", "dosage", "frequency", "prescribed_at"
    ):
        next_dose = _next_dose(medication, last_given.get(medication.pk))
        if next_dose is not None and next_dose <= horizon:
            due.append((next_dose, medication))
    due.sort(key=lambda pair: (pair[0], pair[1].pk))
    due = due[:limit]
    patients = _patients({m.patient_id for _, m in due}) if due else {}
    return [
        DueMedicationRow(patients[m.patient_id], m.display, m.dosage, FREQUENCY_LABELS.get(m.frequency or "", ""), at)
        for at, m in due
    ]


@in_steps
def missing_vitals(*, actor: Any, limit: int = PANEL_ROWS) -> Steps[tuple[list[MissingVitalsRow], int]]:
    """The ward's inpatients with no vital-signs observation within VITALS_INTERVAL, longest stay first,
    with when their vitals were last taken (if ever); and how many there are."""
    stays = _ward_stays(actor)
    if stays is None or not has_capability(actor, Capability.RECORD_VITALS):
        return [], 0
    since = timezone.now() - VITALS_INTERVAL
    recent = Observation.objects.filter(
        patient_id=OuterRef("patient_id"), category=Observation.Category.VITAL_SIGNS, effective_at__gte=since
    )
    missing = stays.filter(~Exists(recent))
    found = list(missing.order_by("starts_at", "id").values_list("patient_id", "starts_at")[:limit])
    if not found:
        return [], 0
    patient_ids = sorted({patient_id for patient_id, _ in found})
    yield Access(
        actor=actor,
        patient_ids=patient_ids,
        category=(D.DEMOGRAPHICS, D.OBSERVATIONS),
        action="list",
        purpose="treatment",
        explanation="ward",
        detail={"list": "missing_vitals"},
    )
    last: dict[int, datetime.datetime] = dict(
        Observation.objects.filter(patient_id__in=patient_ids, category=Observation.Category.VITAL_SIGNS)
        .values("patient_id")
        .annotate(last=Max("effective_at"))
        .values_list("patient_id", "last")
    )
    patients = _patients(patient_ids)
    rows = [MissingVitalsRow(patients[pid], admitted, last.get(pid)) for pid, admitted in found]
    return rows, (missing.count() if len(found) == limit else len(found))


def worklist_counts(*, actor: Any) -> UrgencyCounts | None:
    """Open and in-progress orders of the user's department by priority: counts only, no patient, so
    nothing is recorded and no step-up is needed. None for a role without a worklist."""
    policy = policy_for(actor)
    if policy is None or not has_capability(actor, Capability.VIEW_WORKLIST) or policy.role not in ORDER_KIND_FOR_ROLE:
        return None
    counts = dict(
        Order.objects.filter(
            kind=ORDER_KIND_FOR_ROLE[policy.role], department_id=actor.department_id, status__in=Order.OPEN_STATUSES
        )
        .values("priority")
        .annotate(n=Count("id"))
        .values_list("priority", "n")
    )
    return UrgencyCounts(
        stat=counts.get(Order.Priority.STAT, 0),
        urgent=counts.get(Order.Priority.URGENT, 0),
        routine=counts.get(Order.Priority.ROUTINE, 0),
    )


def today_bounds() -> tuple[datetime.datetime, datetime.datetime]:
    """Midnight to midnight of today in the hospital's time zone."""
    start = timezone.make_aware(datetime.datetime.combine(timezone.localdate(), datetime.time.min))
    return start, start + datetime.timedelta(days=1)


@in_steps
def arrivals_today(*, actor: Any, limit: int = PANEL_ROWS) -> Steps[tuple[list[ArrivalTodayRow], int]]:
    """Encounters that started today, newest first: in the desk's own department when it sits in a
    clinical one, hospital-wide otherwise (as its registration work is; records.permissions.schedule_scope)."""
    scope = schedule_scope(actor)
    if scope is None or not has_capability(actor, Capability.BOOK_APPOINTMENT):
        return [], 0
    start, end = today_bounds()
    encounters = Encounter.objects.filter(starts_at__gte=start, starts_at__lt=end)
    if scope.department_id is not None:
        encounters = encounters.filter(department_id=scope.department_id)
    found = list(
        encounters.select_related("department")
        .only("id", "patient_id", "kind", "status", "starts_at", "department__name")
        .order_by("-starts_at", "-id")[:limit]
    )
    if not found:
        return [], 0
    yield Access(
        actor=actor,
        patient_ids=sorted({e.patient_id for e in found}),
        category=(D.DEMOGRAPHICS, D.ENCOUNTERS),
        action="list",
        purpose="registration",
        detail={"list": "arrivals_today"},
    )
    patients = _patients({e.patient_id for e in found})
    rows = [
        ArrivalTodayRow(
            patients[e.patient_id],
            e.get_kind_display(),
            e.department.name if e.department else "",
            e.starts_at,
            e.get_status_display(),
        )
        for e in found
    ]
    return rows, (encounters.count() if len(found) == limit else len(found))
