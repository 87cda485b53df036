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
from django.urls import reverse

from audit.models import Alert, AlertSubject
from audit.rules import Finding
from audit.signals import access_flagged

logger = logging.getLogger(__name__)

# Repeats of one finding are one case. About a patient (same surname, coworker, VIP ...): while an
# alert about this user and this patient is open, their further accesses join it (a nurse who
# looks up a relative five times during a stay is one case to investigate, not five). About the
# user's behaviour (after hours): repeats within a day join, a day covering a shift and its overlap.
AGGREGATE_WINDOW = datetime.timedelta(hours=24)
OPEN_STATUSES = (Alert.Status.OPEN, Alert.Status.ACKNOWLEDGED)

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
    aggregate: bool = False,
    per_patient: bool = True,
) -> Alert | None:
    """Raise an alert for ``finding`` about ``object_ids`` (of ``kind``); None if it was raised before.

    With ``aggregate``, an open alert of the same rule, user and patient (or, without
    ``per_patient``, of the same rule and user within the AGGREGATE_WINDOW before) takes the events
    instead, and None is returned.
    """
    if not object_ids:
        return None
    if AlertSubject.objects.filter(rule=finding.rule, kind=kind, object_id=object_ids[0]).exists():
        return None
    if aggregate and actor_id is not None:
        earlier = Alert.objects.filter(
            rule=finding.rule, actor_id=actor_id, status__in=OPEN_STATUSES, occurred_at__lte=occurred_at
        )
        if per_patient:
            earlier = earlier.filter(patient_id=patient_id)
        else:
            earlier = earlier.filter(occurred_at__gte=occurred_at - AGGREGATE_WINDOW)
        existing = earlier.order_by("-occurred_at").values_list("pk", flat=True).first()
        if existing is not None:
            try:
                with transaction.atomic():
                    AlertSubject.objects.bulk_create(
                        [
                            AlertSubject(alert_id=existing, rule=finding.rule, kind=kind, object_id=pk)
                            for pk in object_ids
                        ]
                    )
            except IntegrityError:
                pass
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
    """The absolute link to the alert in the security workspace (audit/urls.py ``security:alert``).

    SITE_URL gives the scheme and host; without it (a developer's machine) the link is the path
    alone, and the ``healthcrypt.W014`` check says so outside DEBUG.
    """
    return f"{settings.SITE_URL.rstrip('/')}{reverse('security:alert', args=[alert.pk])}"


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
