"""The security team's work on alerts (DESIGN.md §7): acknowledge, assign, note, close, bulk acknowledge.

Each service takes the acting user explicitly, checks ``review_alerts`` from the role table, locks
the alert rows (``select_for_update``), validates the transition, saves the instance (``notes`` and
``resolution`` are encrypted and row-bound, so never ``QuerySet.update()`` on them) and writes a
ChangeEvent of category ``alert`` in the **same** transaction: if the audit row cannot be written,
the change is rolled back (fail closed). The event names the fields that changed, never the text of
a note or a resolution, which may mention anything.

Transitions::

    open ──acknowledge──> acknowledged
    open | acknowledged ──close(justified | violation, note)──> closed_justified | closed_violation

Assigning and noting leave the status alone; a closed alert can still take a note (a later finding)
but is never reassigned, re-acknowledged or closed again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from accounts.roles import Capability, has_capability
from audit.models import Alert
from audit.services import change_event_record

ALERT_CATEGORY = "alert"
OBJECT_TYPE = "Alert"
# A note longer than this is a document, which belongs in the case file, not in an alert.
NOTE_MAX_LENGTH = 4000
# Bulk acknowledge works on one screenful of the queue at a time; a bigger batch is a script's job.
BULK_MAX = 200
RESOLUTIONS = {
    "justified": Alert.Status.CLOSED_JUSTIFIED,
    "violation": Alert.Status.CLOSED_VIOLATION,
}


class AlertTransitionError(ValidationError):
    """The alert is not in a state that allows this action (the view answers 409 with the message)."""


def _check_actor(actor: Any) -> None:
    # The views check the capability too; the services check again so that a shell or a future view
    # cannot work alerts for a role the table does not allow.
    if not has_capability(actor, Capability.REVIEW_ALERTS):
        raise PermissionDenied("Your role does not allow working alerts.")


def _locked(alert_id: int) -> Alert:
    """The alert, locked for this transaction (Alert.DoesNotExist propagates: the view answers 404)."""
    return Alert.objects.select_for_update().get(pk=alert_id)


def _audit(*, actor: Any, alert: Alert, action: str, fields: Iterable[str]) -> None:
    change_event_record(
        actor=actor,
        patient_id=None,  # a change of an alert is not a change of the patient's record
        category=ALERT_CATEGORY,
        action=action,
        fields=fields,
        object_type=OBJECT_TYPE,
        object_id=alert.pk,
    )


def _stamp(actor: Any, text: str) -> str:
    """A note as it is kept: who wrote it and when (UTC), then the text."""
    return f"[{timezone.now():%Y-%m-%d %H:%M} UTC, {actor.get_username()}] {text.strip()}"


def _clean_note(note: str, *, required: bool) -> str:
    text = (note or "").strip()
    if required and not text:
        raise ValidationError({"note": "Say what you found: a note is required."})
    if len(text) > NOTE_MAX_LENGTH:
        raise ValidationError({"note": f"A note may be at most {NOTE_MAX_LENGTH} characters."})
    return text


def alert_acknowledge(*, actor: Any, alert_id: int) -> Alert:
    """Take an open alert into review (open -> acknowledged)."""
    _check_actor(actor)
    with transaction.atomic():
        alert = _locked(alert_id)
        if alert.status != Alert.Status.OPEN:
            raise AlertTransitionError("Only an open alert can be acknowledged.")
        alert.status = Alert.Status.ACKNOWLEDGED
        alert.updated_at = timezone.now()
        alert.save(update_fields=["status", "updated_at"])
        _audit(actor=actor, alert=alert, action="acknowledge", fields=["status"])
    return alert


def alert_bulk_acknowledge(*, actor: Any, alert_ids: Iterable[int]) -> int:
    """Acknowledge every *open* alert among ``alert_ids``; the others are left alone. Returns how many.

    One ChangeEvent per alert acknowledged, so each alert's history is complete on its own.
    """
    _check_actor(actor)
    ids = sorted({int(pk) for pk in alert_ids})
    if len(ids) > BULK_MAX:
        raise ValidationError(f"Acknowledge at most {BULK_MAX} alerts at a time.")
    count = 0
    with transaction.atomic():
        now = timezone.now()
        # Locked in id order, so two analysts acknowledging overlapping pages cannot deadlock.
        for alert in Alert.objects.select_for_update().filter(pk__in=ids, status=Alert.Status.OPEN).order_by("pk"):
            alert.status = Alert.Status.ACKNOWLEDGED
            alert.updated_at = now
            alert.save(update_fields=["status", "updated_at"])
            _audit(actor=actor, alert=alert, action="acknowledge", fields=["status"])
            count += 1
    return count


def alert_assign(*, actor: Any, alert_id: int, assignee: User | None) -> Alert:
    """Give an alert to an analyst (or to nobody). Only people who may work alerts can be assignees."""
    _check_actor(actor)
    if assignee is not None and not has_capability(assignee, Capability.REVIEW_ALERTS):
        raise ValidationError({"assignee": "Alerts can only be assigned to the security team."})
    with transaction.atomic():
        alert = _locked(alert_id)
        if alert.status in Alert.CLOSED_STATUSES:
            raise AlertTransitionError("A closed alert cannot be reassigned.")
        if alert.assignee_id == (assignee.pk if assignee else None):
            return alert
        alert.assignee = assignee
        alert.updated_at = timezone.now()
        alert.save(update_fields=["assignee", "updated_at"])
        _audit(actor=actor, alert=alert, action="assign", fields=["assignee"])
    return alert


def alert_note(*, actor: Any, alert_id: int, note: str) -> Alert:
    """Add a note to an alert (in any state). The note is encrypted; the audit event says only "notes"."""
    _check_actor(actor)
    text = _clean_note(note, required=True)
    with transaction.atomic():
        alert = _locked(alert_id)
        alert.notes = "\n".join(part for part in (alert.notes, _stamp(actor, text)) if part)
        alert.updated_at = timezone.now()
        alert.save(update_fields=["notes", "updated_at"])
        _audit(actor=actor, alert=alert, action="note", fields=["notes"])
    return alert


def alert_close(*, actor: Any, alert_id: int, resolution: str, note: str) -> Alert:
    """Close an open or acknowledged alert as ``justified`` or ``violation``; the note says why (required)."""
    _check_actor(actor)
    if resolution not in RESOLUTIONS:
        raise ValidationError({"resolution": "Choose justified or violation."})
    text = _clean_note(note, required=True)
    with transaction.atomic():
        alert = _locked(alert_id)
        if alert.status in Alert.CLOSED_STATUSES:
            raise AlertTransitionError("This alert is already closed.")
        now = timezone.now()
        alert.status = RESOLUTIONS[resolution]
        alert.resolution = text
        alert.closed_at = now
        alert.updated_at = now
        fields = ["closed_at", "resolution", "status"]
        if alert.assignee_id is None:
            # Whoever closes an unassigned alert owns the decision.
            alert.assignee = actor
            fields.append("assignee")
        alert.save(update_fields=[*fields, "updated_at"])
        _audit(actor=actor, alert=alert, action=f"close_{resolution}", fields=fields)
    return alert
