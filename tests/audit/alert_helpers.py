"""Alerts for the security workspace tests, made with the model (the rules engineer's alert_raise is not needed)."""

from __future__ import annotations

import datetime
from typing import Any

from django.utils import timezone

from audit.models import Alert, AlertSubject


def make_alert(
    *,
    rule: str = "unexplained_view",
    severity: int = Alert.Severity.MEDIUM,
    status: str = Alert.Status.OPEN,
    actor: Any = None,
    patient_id: int | None = 4242,
    department_id: int | None = None,
    occurred_at: datetime.datetime | None = None,
    reason: str = "Opened a record with no care relationship.",
    subjects: list[tuple[str, int]] = (),  # type: ignore[assignment]
) -> Alert:
    """One alert (saved as an instance: notes and resolution are row-bound) with its subject links."""
    when = occurred_at or timezone.now()
    alert = Alert(
        rule=rule,
        severity=severity,
        status=status,
        reason=reason,
        actor_id=getattr(actor, "pk", None),
        actor_username=getattr(actor, "username", "") if actor else "",
        actor_role=getattr(actor, "role", "") if actor else "",
        department_id=department_id if department_id is not None else getattr(actor, "department_id", None),
        patient_id=patient_id,
        occurred_at=when,
        created_at=when,
        updated_at=when,
    )
    alert.save()
    for kind, object_id in subjects:
        AlertSubject.objects.create(alert=alert, rule=rule, kind=kind, object_id=object_id)
    return alert
