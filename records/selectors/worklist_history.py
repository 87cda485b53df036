"""Radiology's and the laboratory's history: the orders their department completed, and one of them, read-only.

A completed order no longer opens the patient's chart (records/permissions.py: only an open order
does); what it still opens, to the staff of the department that did the work, is that work: the
order, its results, its reports and its images, nothing else of the record. Each opening is recorded
like any other, explained as ``order_history`` with the order's id.
"""

from __future__ import annotations

from typing import Any

from accounts.roles import Capability, DataCategory, has_capability, policy_for
from records.models import Attachment, ClinicalNote, Observation, Order, Patient
from records.permissions import ORDER_KIND_FOR_ROLE, AccessDecision
from records.selectors.access import (
    SUMMARY_FIELDS,
    AccessRefused,
    _attachment_row,
    _demographics,
    _name,
    _note_row,
    _observation_row,
    _order_row,
    _page_number,
    _record,
    _summary,
    _with_staff,
)
from records.selectors.read_models import (
    LIST_PER_PAGE,
    SECTION_LIMIT,
    Chart,
    CompletedOrderRow,
    OrderRow,
    Page,
)

D = DataCategory
EXPLANATION = "order_history"
# What a completed order shows its department: the work itself, and who it was for (the banner).
HISTORY_CATEGORIES = frozenset({D.DEMOGRAPHICS, D.ORDERS, D.OBSERVATIONS, D.NOTES, D.IMAGING})


def _department_kind(actor: Any) -> str:
    """The order kind of the actor's department work; AccessRefused (403) for a role without a worklist."""
    policy = policy_for(actor)
    if policy is None or policy.role not in ORDER_KIND_FOR_ROLE or not has_capability(actor, Capability.VIEW_WORKLIST):
        raise AccessRefused(AccessDecision.forbidden("role_without_worklist"))
    return ORDER_KIND_FOR_ROLE[policy.role]


def completed_by_department(actor: Any, order_id: int | None, category: DataCategory) -> bool:
    """Whether ``order_id`` is an order the actor's department completed and ``category`` of it is
    shown to them there (its images stay downloadable, for one)."""
    policy = policy_for(actor)
    if order_id is None or policy is None or policy.role not in ORDER_KIND_FOR_ROLE or actor.department_id is None:
        return False
    if category not in HISTORY_CATEGORIES & policy.categories:
        return False
    return Order.objects.filter(
        pk=order_id,
        kind=ORDER_KIND_FOR_ROLE[policy.role],
        department_id=actor.department_id,
        status=Order.Status.COMPLETED,
    ).exists()


def completed_orders(*, actor: Any, page: object = 1) -> tuple[list[CompletedOrderRow], Page]:
    """Orders completed by the user's department, newest first, paged, with who completed them and when."""
    kind = _department_kind(actor)
    # A user without a department matches no order (department is never null).
    orders = Order.objects.filter(kind=kind, department_id=actor.department_id, status=Order.Status.COMPLETED)
    total = orders.count()
    current = Page(_page_number(page), LIST_PER_PAGE, total)
    current = Page(min(current.number, current.num_pages), current.per_page, total)
    start = (current.number - 1) * current.per_page
    rows = (
        list(
            _with_staff(orders, "ordered_by", "completed_by")
            .select_related("department")
            .order_by("-completed_at", "-id")[start : start + current.per_page]
        )
        if total
        else []
    )
    _record(
        actor=actor,
        patient_ids=sorted({o.patient_id for o in rows}),
        category=D.ORDERS,
        action="list",
        purpose="treatment",
        explanation=EXPLANATION,
        detail={"list": "completed_orders"},
    )
    patients = {
        p.pk: _summary(p) for p in Patient.objects.filter(pk__in={o.patient_id for o in rows}).only(*SUMMARY_FIELDS)
    }
    return [CompletedOrderRow(_order_row(o), patients[o.patient_id], _name(o.completed_by)) for o in rows], current


def completed_order_for_department(*, actor: Any, order_id: int) -> tuple[OrderRow, Chart]:
    """One order the user's department completed, with its results, reports and images (read-only).

    404 for an order of another department or kind, one not completed, or a user without a department.
    """
    kind = _department_kind(actor)
    order = (
        _with_staff(
            Order.objects.filter(
                pk=order_id, kind=kind, department_id=actor.department_id, status=Order.Status.COMPLETED
            ),
            "ordered_by",
        )
        .select_related("department")
        .first()
        if actor.department_id is not None
        else None
    )
    if order is None:
        raise AccessRefused(AccessDecision.not_found())
    policy = policy_for(actor)
    visible = HISTORY_CATEGORIES & policy.categories if policy is not None else frozenset()
    _record(
        actor=actor,
        patient_ids=[order.patient_id],
        category=sorted(visible),
        action="view",
        purpose="treatment",
        explanation=EXPLANATION,
        detail={"order_id": order.pk},
    )
    # Only now is anything decrypted; every section is this order's, nothing else of the record.
    patient = Patient.objects.get(pk=order.patient_id)
    row = _order_row(order)
    sections: dict[str, Any] = {"orders": (row,)}
    if D.OBSERVATIONS in visible:
        sections["observations"] = tuple(
            _observation_row(o)
            for o in _with_staff(
                Observation.objects.filter(order_id=order.pk, patient_id=order.patient_id), "recorded_by"
            ).order_by("-effective_at", "-id")[:SECTION_LIMIT]
        )
    if D.NOTES in visible:
        sections["notes"] = tuple(
            _note_row(n)
            for n in _with_staff(
                ClinicalNote.objects.filter(order_id=order.pk, patient_id=order.patient_id), "author"
            ).order_by("-signed_at", "-id")[:SECTION_LIMIT]
        )
    if D.IMAGING in visible:
        sections["attachments"] = tuple(
            _attachment_row(a)
            for a in _with_staff(
                Attachment.objects.filter(order_id=order.pk, patient_id=order.patient_id), "uploaded_by"
            ).order_by("-uploaded_at")[:SECTION_LIMIT]
        )
    chart = Chart(
        patient=_demographics(patient),
        explanation=EXPLANATION,
        categories=visible,
        order_ids=(order.pk,),
        **sections,
    )
    return row, chart
