"""Orders: a physician places and cancels them; radiology and the laboratory complete them."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import Department
from accounts.roles import Capability, DataCategory
from records.models import Order
from records.services.base import RecordNotFound, _changed, _require, _require_relationship, _save, _worklist_order

D = DataCategory

# The kind of department each kind of order goes to.
DEPARTMENT_FOR_ORDER_KIND: dict[str, str] = {
    Order.Kind.RADIOLOGY: Department.Kind.RADIOLOGY,
    Order.Kind.LAB: Department.Kind.LAB,
}


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
    if department.kind != DEPARTMENT_FOR_ORDER_KIND.get(kind):
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
def order_cancel(*, actor: Any, patient_id: int, order_id: int) -> Order:
    """The ordering physician (or another on the care team) cancels an open order of ``patient_id``.

    An order of another patient, or one no longer open, is RecordNotFound (a 404).
    """
    _require(actor, Capability.PLACE_ORDER)
    order = (
        Order.objects.select_for_update()
        .filter(pk=order_id, patient_id=patient_id, status__in=Order.OPEN_STATUSES)
        .first()
    )
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
