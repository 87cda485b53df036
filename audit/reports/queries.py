"""What the two compliance reports read: access events over a period of whole days, and the
break-the-glass grants for a patient (metadata only)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from audit.models import AccessEvent
from audit.reports.trail import day_bounds
from records.models import BreakGlassGrant


def _in_period(queryset: QuerySet[AccessEvent], date_from: datetime.date, date_to: datetime.date) -> QuerySet[Any]:
    start, end = day_bounds(date_from, date_to)
    return queryset.filter(at__gte=start, at__lt=end).order_by("-at", "-id")


def patient_report_events(
    *, patient_id: int, date_from: datetime.date, date_to: datetime.date
) -> QuerySet[AccessEvent]:
    """Every access event about ``patient_id`` in the period, newest first (index patient_id, at)."""
    return _in_period(AccessEvent.objects.filter(patient_id=patient_id), date_from, date_to)


@dataclass(frozen=True)
class GrantRow:
    """A break-the-glass grant as the report shows it: metadata only, never the free-text explanation."""

    id: int
    user_id: int
    username: str
    role: str
    reason: str
    granted_at: datetime.datetime
    expires_at: datetime.datetime
    ended_at: datetime.datetime | None


def patient_report_grants(*, patient_id: int, date_from: datetime.date, date_to: datetime.date) -> list[GrantRow]:
    """The emergency grants for ``patient_id`` made in the period, newest first (one query)."""
    start, end = day_bounds(date_from, date_to)
    grants = (
        BreakGlassGrant.objects.filter(patient_id=patient_id, granted_at__gte=start, granted_at__lt=end)
        .select_related("user")
        .only("id", "user__username", "user__role", "reason", "granted_at", "expires_at", "ended_at")
        .order_by("-granted_at", "-id")
    )
    return [
        GrantRow(g.pk, g.user_id, g.user.username, g.user.role, g.reason, g.granted_at, g.expires_at, g.ended_at)
        for g in grants
    ]


@dataclass(frozen=True)
class Subject:
    """The person a per-user report is about: an account if one has the username, else the name only."""

    username: str
    user_id: int | None


def user_report_subject(username: str) -> Subject:
    """Resolve ``username`` to an account; events of a renamed account still follow its id."""
    user_id = get_user_model().objects.filter(username=username).values_list("pk", flat=True).first()
    return Subject(username=username, user_id=user_id)


def user_report_events(*, subject: Subject, date_from: datetime.date, date_to: datetime.date) -> QuerySet[AccessEvent]:
    """Every access event by ``subject`` in the period, newest first (index actor_id, at)."""
    if subject.user_id is not None:
        events = AccessEvent.objects.filter(actor_id=subject.user_id)
    else:
        # No such account (any more): fall back on the name recorded at the time.
        events = AccessEvent.objects.filter(actor_username=subject.username)
    return _in_period(events, date_from, date_to)
