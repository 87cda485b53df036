"""Writes of the audit trail. Called by the receivers; a failure propagates (fail closed)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.utils import timezone

from audit import context
from audit.chain import insert_unsealed, insert_unsealed_batches
from audit.models import AccessEvent, AuthEventRecord, ChangeEvent


def _actor_fields(actor: Any) -> dict[str, Any]:
    if actor is None or not getattr(actor, "is_authenticated", False):
        return {"actor_id": None, "actor_username": "", "actor_role": ""}
    return {"actor_id": actor.pk, "actor_username": actor.get_username(), "actor_role": actor.role or "operator"}


def access_event_record(
    *,
    actor: Any,
    patient_ids: Iterable[int | None],
    categories: Iterable[str],
    action: str,
    purpose: str = "",
    explanation: str = "",
    detail: Mapping[str, Any] | None = None,
) -> list[AccessEvent]:
    """Store one access: one event per patient shown, listing the sections shown, in one INSERT (no values).

    ``sections`` is the distinct ``categories``, sorted (a stable order, whatever order the page drew
    them in); ``category`` is the first one passed, the access's primary section. An access shows at
    least one section: none is a caller's bug, refused before anything is written or shown.
    """
    named = [str(category) for category in categories]
    if not named:
        raise ValueError("An access event names at least one section.")
    sections = sorted(set(named))
    ctx = context.current()
    actor_fields = _actor_fields(actor)
    at = timezone.now()
    events = [
        AccessEvent(
            at=at,
            **actor_fields,
            patient_id=patient_id,
            category=named[0],
            sections=list(sections),
            action=action,
            purpose=purpose,
            explanation=explanation,
            detail=dict(detail or {}),
            ip=ctx.ip,
            user_agent=ctx.user_agent,
            request_id=ctx.request_id,
            session_ref=ctx.session_ref,
        )
        for patient_id in patient_ids
    ]
    return insert_unsealed(events)


def change_event_record(
    *,
    actor: Any,
    patient_id: int | None,
    category: str,
    action: str,
    fields: Iterable[str],
    object_type: str = "",
    object_id: int | None = None,
) -> ChangeEvent:
    """Store one change of patient data (field names, never values)."""
    (event,) = change_events_record(
        actor=actor,
        rows=[(patient_id, object_id)],
        category=category,
        action=action,
        fields=fields,
        object_type=object_type,
    )
    return event


def change_events_record(
    *,
    actor: Any,
    rows: Iterable[tuple[int | None, int | None]],
    category: str,
    action: str,
    fields: Iterable[str],
    object_type: str = "",
) -> list[ChangeEvent]:
    """Store one change event per (patient id, object id) of rows of one kind written together, in one
    INSERT; the same fields as :func:`change_event_record`, whose events these are."""
    ctx = context.current()
    names = sorted(fields)
    at = timezone.now()  # one instant for the batch, as for an access's events
    events = [
        ChangeEvent(
            at=at,
            **_actor_fields(actor),
            patient_id=patient_id,
            category=category,
            action=action,
            fields=list(names),
            object_type=object_type,
            object_id=object_id,
            ip=ctx.ip,
            user_agent=ctx.user_agent,
            request_id=ctx.request_id,
        )
        for patient_id, object_id in rows
    ]
    return insert_unsealed(events)


def change_event_groups_record(
    *,
    actor: Any,
    action: str,
    groups: Iterable[tuple[str, str, Iterable[str], Iterable[tuple[int | None, int | None]]]],
) -> list[int]:
    """Store one change event per row of rows of several kinds written together (an import's batch:
    ``(object type, category, field names, [(patient id, object id)...])`` per kind), in one statement,
    in the order given, each event as :func:`change_event_record` writes it; their keys.

    Given as columns (audit/chain.py ``insert_unsealed_batches``), not as an instance per event: an
    import's events differ only by kind and by row, and were most of the cost of writing its rows."""
    ctx = context.current()
    shared = {
        "at": timezone.now(),  # one instant for the batch, as for an access's events
        **_actor_fields(actor),
        "action": action,
        "ip": ctx.ip,
        "user_agent": ctx.user_agent,
        "request_id": ctx.request_id,
    }
    batches = [
        ({"object_type": object_type, "category": category, "fields": sorted(fields)}, list(rows))
        for object_type, category, fields, rows in groups
    ]
    return insert_unsealed_batches(ChangeEvent, shared=shared, varying=("patient_id", "object_id"), batches=batches)


def auth_event_record(
    *, event: str, actor: Any, target: Any, username: str, ip: str | None, user_agent: str, detail: Mapping[str, Any]
) -> AuthEventRecord:
    """Store one authentication or privilege event."""
    (record,) = insert_unsealed(
        [
            AuthEventRecord(
                event=str(event),
                actor_id=getattr(actor, "pk", None) if getattr(actor, "is_authenticated", False) else None,
                target_id=getattr(target, "pk", None),
                username=username[:150],
                ip=ip,
                user_agent=user_agent[:255],
                detail={
                    k: v for k, v in detail.items() if isinstance(v, str | int | float | bool | dict | list | None)
                },
            )
        ]
    )
    return record
