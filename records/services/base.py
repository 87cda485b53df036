"""What every write shares: the refusals, the capability and relationship checks, validation and the change signal."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError

from accounts.roles import Capability, DataCategory, has_capability
from records.db import mark_actor
from records.models import Allergy, Condition, Medication, Order
from records.permissions import chart_access, order_access
from records.signals import patient_data_changed

D = DataCategory


class RecordNotFound(Exception):
    """The target does not exist, or the actor has no relationship to it (same answer: 404)."""


class DuplicatePatient(ValidationError):
    """Registration would create a second record for a patient already registered."""


class EncounterAlreadyClosed(ValidationError):
    """A discharge of a stay that is already closed (a second click, two people at once): a 409."""


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
    # No 403 here: _require has already refused a role without the capability, and every role that
    # may write has chart access (accounts/roles.py), so a refusal is a missing relationship.
    if not decision.allowed or category not in decision.categories:
        raise RecordNotFound
    return decision.explanation


def _save(instance: Any, actor: Any = None, *, marked: bool = False, known: Iterable[str] = ()) -> None:
    """Validate and save ``instance`` in a transaction marked as the application's.

    ``marked``: the caller's ``_require`` marked this transaction already, in the same savepoint with
    nothing rolled back since (the marker is a setting of the transaction: two queries spared).
    ``known``: foreign keys whose target the caller has just read (the relationship check found the
    patient; the actor is the signed-in user; the order was locked), so that validation does not ask
    the database again whether they exist. A new row's ``row_uid`` is a fresh uuid4: it is not looked
    up for uniqueness either. Everything else is validated as ``full_clean`` does (fields, ``clean``,
    unique checks and constraints, including those that involve the known keys), and the database's
    own constraints hold regardless. Issue 11: a set of three vitals cost 47 queries, 15 of them these.
    """
    _validate(instance, set(known))
    if not marked:
        mark_actor(actor)
    instance.save()


def _validate(instance: Any, known: set[str]) -> None:
    """``full_clean``, but with the field checks of ``known`` foreign keys (and a new row's fresh
    ``row_uid``) left out; unique checks and constraints still cover the known keys."""
    fresh = {"row_uid"} if instance._state.adding and any(f.name == "row_uid" for f in instance._meta.fields) else set()
    skip = known | fresh
    errors: dict[str, Any] = {}
    try:
        instance.clean_fields(exclude=skip)
    except ValidationError as e:
        errors = e.update_error_dict(errors)
    try:
        instance.clean()
    except ValidationError as e:
        errors = e.update_error_dict(errors)
    # As full_clean: a field that already failed is not checked for uniqueness.
    failed = {name for name in errors if name != NON_FIELD_ERRORS} | fresh
    try:
        instance.validate_unique(exclude=failed)
    except ValidationError as e:
        errors = e.update_error_dict(errors)
    try:
        # Not the one-row-per-source-id constraints (records.models.unique_source): the database holds
        # them, and checking them here costs a query per row, even a row entered here without a source id.
        instance.validate_constraints(exclude=failed | {"source_id"})
    except ValidationError as e:
        errors = e.update_error_dict(errors)
    if errors:
        raise ValidationError(errors)


def _worklist_order(actor: Any, order_id: int) -> Order:
    decision, row = order_access(actor, order_id)
    if row is None:
        if decision.status == 403:
            raise PermissionDenied("Your role does not allow this.")
        raise RecordNotFound
    return Order.objects.select_for_update().get(pk=row.pk)


# The entries added through _chart_entry_add: each has a patient and no other parent to check.
_Entry = TypeVar("_Entry", Medication, Condition, Allergy)


def _chart_entry_add(
    *, actor: Any, capability: Capability, category: DataCategory, entry: _Entry, fields: tuple[str, ...]
) -> _Entry:
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
