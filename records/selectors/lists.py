"""Lists and searches of patients, and the radiology and laboratory worklist."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

from django.db.models import Case, Q, QuerySet, When
from django.utils import timezone

from accounts.roles import Capability, DataCategory, has_capability, policy_for
from records.crypto import mrn_index, name_dob_index, normalise_name
from records.models import CareAssignment, Encounter, Order, Patient
from records.permissions import ORDER_KIND_FOR_ROLE, AccessDecision, active_assignments, open_encounters, order_access
from records.selectors.access import (
    SUMMARY_FIELDS,
    Access,
    AccessRefused,
    Steps,
    _order_row,
    _page_number,
    _record,
    _summary,
    in_steps,
)
from records.selectors.chart import chart_for
from records.selectors.read_models import LIST_PER_PAGE, Chart, OrderRef, OrderRow, Page, PatientSummary, WorklistRow

D = DataCategory


# Sorting a list by a decrypted column (name, birth date, MRN) reads the whole list's names: fine for
# one user's own patients (a ward at most), refused beyond this many (the list keeps its DB order).
DECRYPTED_SORT_LIMIT = 500
MY_PATIENTS_SORTS = ("name", "born", "mrn")
# The registrations are the whole registry's newest: only the sort the database can do.
REGISTRATION_SORTS = ("registered",)


def sort_summaries(patients: list[PatientSummary], sort: str) -> list[PatientSummary]:
    """Patients sorted by a column key (``name``, ``born``, ``mrn``, ``registered``; "-" reverses)."""
    key, descending = sort.removeprefix("-"), sort.startswith("-")
    by: dict[str, Callable[[PatientSummary], Any]] = {
        "name": lambda p: (normalise_name(p.family_name), normalise_name(p.given_name), p.id),
        "born": lambda p: (p.birth_date, p.id),
        "mrn": lambda p: (p.mrn.casefold(), p.id),
        "registered": lambda p: p.id,
    }
    return sorted(patients, key=by.get(key, by["name"]), reverse=descending)


def _listed(
    *,
    actor: Any,
    queryset: QuerySet[Patient],
    page: object,
    action: str,
    purpose: str,
    detail: dict[str, Any],
    sort: str = "",
    sorts: tuple[str, ...] = (),
) -> Steps[tuple[list[PatientSummary], Page]]:
    key = sort.removeprefix("-")
    total = queryset.count()
    current = Page(_page_number(page), LIST_PER_PAGE, total)
    current = Page(min(current.number, current.num_pages), current.per_page, total)
    start = (current.number - 1) * current.per_page
    if key in sorts and key != "registered" and total <= DECRYPTED_SORT_LIMIT:
        # Decrypted to sort only; nothing leaves this function before the page's accesses are recorded.
        everyone = sort_summaries([_summary(p) for p in queryset.only(*SUMMARY_FIELDS)], sort)
        shown = everyone[start : start + current.per_page]
        yield Access(
            actor=actor,
            patient_ids=[p.id for p in shown],
            category=D.DEMOGRAPHICS,
            action=action,
            purpose=purpose,
            detail=detail,
        )
        return shown, current
    # Registration order is the primary key's (created_at follows it and has no index).
    order = ("-id",) if sort == "-registered" else ("id",)
    ids = list(queryset.order_by(*order).values_list("id", flat=True)[start : start + current.per_page])
    yield Access(actor=actor, patient_ids=ids, category=D.DEMOGRAPHICS, action=action, purpose=purpose, detail=detail)
    patients = Patient.objects.filter(pk__in=ids).only(*SUMMARY_FIELDS).order_by(*order)
    return [_summary(p) for p in patients], current


def patient_search(
    *,
    actor: Any,
    mrn: str = "",
    family_name: str = "",
    birth_date: datetime.date | None = None,
    purpose: str = "registration",
) -> list[PatientSummary]:
    """Exact search by MRN, or by surname and birth date, through the blind indexes.

    The search itself is recorded (how it searched, how many results, never the terms) and so is
    each patient it showed, so a patient's access report lists searches that found them.
    """
    if not has_capability(actor, Capability.SEARCH_PATIENTS):
        raise AccessRefused(AccessDecision.forbidden("role_cannot_search"))
    if mrn.strip():
        queryset, by = Patient.objects.filter(mrn_index=mrn_index(mrn)), "mrn"
    elif family_name.strip() and birth_date is not None:
        queryset, by = Patient.objects.filter(name_dob_index=name_dob_index(family_name, birth_date)), "name_dob"
    else:
        return []
    ids = list(queryset.order_by("id").values_list("id", flat=True)[:LIST_PER_PAGE])
    _record(
        actor=actor,
        patient_ids=[None],
        category=D.DEMOGRAPHICS,
        action="search",
        purpose=purpose,
        detail={"by": by, "results": len(ids)},
    )
    if ids:
        _record(
            actor=actor,
            patient_ids=ids,
            category=D.DEMOGRAPHICS,
            action="search_result",
            purpose=purpose,
            detail={"by": by},
        )
    return [_summary(p) for p in Patient.objects.filter(pk__in=ids).only(*SUMMARY_FIELDS).order_by("id")]


@in_steps
def my_patients(*, actor: Any, page: object = 1, sort: str = "name") -> Steps[tuple[list[PatientSummary], Page]]:
    """The patients a physician or nurse cares for now: care team, attending, and (nurses) their ward.

    Sorted by ``sort`` (one of MY_PATIENTS_SORTS, "-" to reverse; by name unless told), which means
    decrypting the list's names: bounded by DECRYPTED_SORT_LIMIT, beyond which it keeps DB order.
    """
    policy = policy_for(actor)
    if policy is None or not has_capability(actor, Capability.VIEW_PATIENT_LIST):
        raise AccessRefused(AccessDecision.forbidden("role_without_patient_list"))
    now = timezone.now()
    relation = Q(pk__in=CareAssignment.objects.filter(active_assignments(now), staff_id=actor.pk).values("patient_id"))
    relation |= Q(pk__in=Encounter.objects.filter(open_encounters(), attending_id=actor.pk).values("patient_id"))
    if policy.chart_access == "care_team_or_ward" and actor.department_id:
        relation |= Q(
            pk__in=Encounter.objects.filter(open_encounters(), department_id=actor.department_id).values("patient_id")
        )
    return (
        yield from _listed(
            actor=actor,
            queryset=Patient.objects.filter(relation),
            page=page,
            action="list",
            purpose="treatment",
            detail={"list": "my_patients"},
            sort=sort,
            sorts=MY_PATIENTS_SORTS,
        )
    )


@in_steps
def registration_list(
    *, actor: Any, page: object = 1, sort: str = "-registered"
) -> Steps[tuple[list[PatientSummary], Page]]:
    """The front desk's list of recently registered patients (demographics only), newest first
    unless ``sort`` is "registered" (oldest first). Only the database's sort: it is the registry."""
    if not has_capability(actor, Capability.REGISTER_PATIENT):
        raise AccessRefused(AccessDecision.forbidden("role_cannot_register"))
    recent = Patient.objects.filter(pk__in=Patient.objects.order_by("-id").values("id")[:200])
    return (
        yield from _listed(
            actor=actor,
            queryset=recent,
            page=page,
            action="list",
            purpose="registration",
            detail={"list": "recent_registrations"},
            sort=sort if sort in ("registered", "-registered") else "-registered",
            sorts=REGISTRATION_SORTS,
        )
    )


@in_steps
def worklist(*, actor: Any, page: object = 1) -> Steps[tuple[list[WorklistRow], Page]]:
    """Open radiology or laboratory orders for the user's department, urgent first."""
    policy = policy_for(actor)
    if policy is None or not has_capability(actor, Capability.VIEW_WORKLIST):
        raise AccessRefused(AccessDecision.forbidden("role_without_worklist"))
    orders = Order.objects.filter(
        kind=ORDER_KIND_FOR_ROLE[policy.role], department_id=actor.department_id, status__in=Order.OPEN_STATUSES
    )
    total = orders.count()
    current = Page(_page_number(page), LIST_PER_PAGE, total)
    current = Page(min(current.number, current.num_pages), current.per_page, total)
    start = (current.number - 1) * current.per_page
    urgency = Case(When(priority=Order.Priority.STAT, then=0), When(priority=Order.Priority.URGENT, then=1), default=2)
    rows = list(
        orders.select_related("department", "ordered_by").order_by(urgency, "ordered_at", "id")[
            start : start + current.per_page
        ]
    )
    yield Access(
        actor=actor,
        patient_ids=sorted({o.patient_id for o in rows}),
        category=D.ORDERS,
        action="list",
        purpose="treatment",
        explanation="order",
        detail={"list": "worklist"},
    )
    patients = {
        p.pk: _summary(p) for p in Patient.objects.filter(pk__in={o.patient_id for o in rows}).only(*SUMMARY_FIELDS)
    }
    return [WorklistRow(_order_row(o), patients[o.patient_id]) for o in rows], current


def worklist_order(*, actor: Any, order_id: int) -> OrderRef:
    """Check that ``order_id`` is an open order of the user's department; raises AccessRefused otherwise."""
    decision, order = order_access(actor, order_id)
    if order is None:
        raise AccessRefused(decision)
    return OrderRef(order.pk, order.patient_id, order.kind)


def order_for_worklist(*, actor: Any, order_id: int) -> tuple[OrderRow, Chart]:
    """One open order of the user's department, with the chart sections that order opens."""
    decision, order = order_access(actor, order_id)
    if order is None:
        raise AccessRefused(decision)
    chart = chart_for(actor=actor, patient_id=order.patient_id, purpose="treatment")
    row = next((o for o in chart.orders if o.id == order_id), None)
    if row is None:  # pragma: no cover - order_access and chart_access agree by construction
        raise AccessRefused(AccessDecision.not_found())
    return row, chart
