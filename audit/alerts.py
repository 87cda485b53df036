"""Raising alerts from rule findings (DESIGN.md §7), once per event and rule, and telling the team.

``alert_raise`` is idempotent: ``AlertSubject`` is unique per (rule, kind, object), so whether a rule
ran inline or in a later ``scan_access``, the same event never alerts twice for the same rule. An
alert never touches the sealed events it is about; it points at them.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse

from audit.models import Alert, AlertSubject
from audit.rules import Finding
from audit.signals import access_flagged

logger = logging.getLogger(__name__)

# Alerts at or above this severity are mailed to the security team: the ones that should be looked
# at today, not in the weekly review.
NOTIFY_SEVERITY = Alert.Severity.HIGH


def alert_raise(
    *,
    finding: Finding,
    kind: str,
    object_ids: Sequence[int],
    occurred_at: datetime.datetime,
    actor_id: int | None = None,
    actor_username: str = "",
    actor_role: str = "",
    department_id: int | None = None,
    patient_id: int | None = None,
) -> Alert | None:
    """Raise an alert for ``finding`` about ``object_ids`` (of ``kind``); None if it was raised before."""
    if not object_ids:
        return None
    if AlertSubject.objects.filter(rule=finding.rule, kind=kind, object_id=object_ids[0]).exists():
        return None
    try:
        # A savepoint: a concurrent scan that raised it first makes this one roll back alone.
        with transaction.atomic():
            alert = Alert.objects.create(
                rule=finding.rule,
                severity=finding.severity,
                reason=finding.reason[:300],
                actor_id=actor_id,
                actor_username=actor_username,
                actor_role=actor_role,
                department_id=department_id,
                patient_id=patient_id,
                occurred_at=occurred_at,
            )
            AlertSubject.objects.bulk_create(
                [AlertSubject(alert=alert, rule=finding.rule, kind=kind, object_id=pk) for pk in object_ids]
            )
    except IntegrityError:
        return None
    access_flagged.send(sender=Alert, alert=alert)
    return alert


def alert_url(alert: Alert) -> str:
    """The link to the alert in the security workspace (absolute when SITE_URL is set)."""
    try:
        path = reverse("audit:alert_detail", args=[alert.pk])
    except NoReverseMatch:
        path = f"/security/alerts/{alert.pk}/"
    return f"{getattr(settings, 'SITE_URL', '').rstrip('/')}{path}"


def recipients() -> list[str]:
    """Active security users with an email address."""
    from accounts.models import User
    from accounts.roles import Role

    return sorted(
        set(User.objects.filter(role=Role.SECURITY, is_active=True).exclude(email="").values_list("email", flat=True))
    )


def alert_notify(alert: Alert) -> int:
    """Email the security team about a high-severity alert: rule, severity and a link; no patient data."""
    to = recipients()
    if not to:
        return 0
    context = {"alert": alert, "url": alert_url(alert), "severity": alert.get_severity_display()}
    subject = " ".join(render_to_string("emails/alert-subject.html", context).split())
    body = render_to_string("emails/alert-body-text.html", context)
    return send_mail(subject, body, None, to)


def on_access_flagged(sender: Any, *, alert: Alert, **kwargs: Any) -> None:
    """Mail high-severity alerts after the commit (a rolled-back alert is not announced)."""
    if alert.severity < NOTIFY_SEVERITY:
        return

    def send() -> None:
        try:
            alert_notify(alert)
        except Exception:
            # Mail is a courtesy on top of the queue: a broken mail server must not fail a chart.
            logger.exception("Could not mail the security team about alert #%s", alert.pk)

    transaction.on_commit(send)
