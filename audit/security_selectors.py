"""Reads of the security workspace: the alert queue and an alert's page (metadata only, DESIGN.md §3).

Security analysts see *who, when, which section, why* and patients by id: never a clinical value,
never a patient's name. So every read here is a ``values()`` of audit metadata columns, and the
encrypted ``notes``/``resolution`` of alerts are deferred on lists (only an alert's own page opens them).
Each read is a fixed number of queries, whatever the number of rows (pinned in the tests).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from django.db.models import Count, QuerySet

from accounts.models import Department, User
from accounts.roles import Capability, roles_with
from audit.models import (
    AccessEvent,
    Alert,
    AlertSubject,
    AuthEventRecord,
    ChangeEvent,
    DirectChangeSeal,
    RuleFailure,
    sections_of,
)
from audit.reports import day_bounds
from records.models import BreakGlassGrant

# The columns of an alert in every CSV export of alerts (the security queue and the admin).
ALERT_CSV_COLUMNS = (
    "id",
    "created_at",
    "occurred_at",
    "rule",
    "severity",
    "status",
    "reason",
    "actor_id",
    "actor_username",
    "actor_role",
    "department_id",
    "patient_id",
    "assignee__username",
    "closed_at",
)

# How much history an alert's page shows around it: enough to see a pattern, small enough to read.
RECENT_ROWS = 25
# Sort keys a queue URL may name, mapped to columns (anything else falls back to the default).
SORTS: Mapping[str, tuple[str, ...]] = {
    "newest": ("-created_at", "-id"),
    "oldest": ("created_at", "id"),
    "severity": ("-severity", "-created_at", "-id"),
    "occurred": ("-occurred_at", "-id"),
    "rule": ("rule", "-created_at", "-id"),
    "status": ("status", "-created_at", "-id"),
    "user": ("actor_username", "-created_at", "-id"),
}
DEFAULT_SORT = "severity"
ACCESS_COLUMNS = (
    "id",
    "at",
    "actor_id",
    "actor_username",
    "actor_role",
    "patient_id",
    "category",
    "sections",
    "action",
)
ACCESS_COLUMNS_WHY = (*ACCESS_COLUMNS, "purpose", "explanation")


def _with_sections(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Access event rows with ``sections`` as ``sections_of`` answers it (an event written one per
    section, before events listed them, shows its category)."""
    return [{**row, "sections": sections_of(row)} for row in rows]


@dataclass(frozen=True)
class QueueFilters:
    """The queue's filters, already validated by the form (audit/forms_security.py)."""

    rule: str = ""
    severity: int | None = None
    status: str = ""
    department_id: int | None = None
    username: str = ""
    date_from: datetime.date | None = None
    date_to: datetime.date | None = None
    sort: str = DEFAULT_SORT

    def as_detail(self) -> dict[str, Any]:
        """The filters for an audit event's detail: vocabulary values, ids and dates only."""
        detail: dict[str, Any] = {
            "rule": self.rule,
            "severity": self.severity,
            "status": self.status,
            "department_id": self.department_id,
            "user": bool(self.username),  # that there was one; a typed name stays out of the trail
            "date_from": self.date_from.isoformat() if self.date_from else None,
            "date_to": self.date_to.isoformat() if self.date_to else None,
            "sort": self.sort,
        }
        return {key: value for key, value in detail.items() if value not in (None, "", False)}


def alert_queue(filters: QueueFilters) -> QuerySet[Alert]:
    """The alerts matching ``filters``, sorted, without their encrypted columns (not shown on lists)."""
    alerts = Alert.objects.select_related("assignee").defer("notes", "resolution")
    if filters.rule:
        alerts = alerts.filter(rule=filters.rule)
    if filters.severity is not None:
        alerts = alerts.filter(severity=filters.severity)
    if filters.status == "active":
        alerts = alerts.filter(status__in=[Alert.Status.OPEN, Alert.Status.ACKNOWLEDGED])
    elif filters.status:
        alerts = alerts.filter(status=filters.status)
    if filters.department_id is not None:
        alerts = alerts.filter(department_id=filters.department_id)
    if filters.username:
        alerts = alerts.filter(actor_username__iexact=filters.username)
    start, end = day_bounds(filters.date_from, filters.date_to)
    if start is not None:
        alerts = alerts.filter(occurred_at__gte=start)
    if end is not None:
        alerts = alerts.filter(occurred_at__lt=end)
    return alerts.order_by(*SORTS.get(filters.sort, SORTS[DEFAULT_SORT]))


def alert_rules() -> list[str]:
    """Rule names that have alerts (the queue's rule filter); a small vocabulary."""
    return list(Alert.objects.order_by("rule").values_list("rule", flat=True).distinct())


def department_names() -> dict[int, str]:
    """Department id -> name, for labelling alerts (a handful of rows)."""
    return dict(Department.objects.values_list("id", "name"))


def security_team() -> QuerySet[User]:
    """Active users who may work alerts: the people an alert can be assigned to."""
    return User.objects.filter(is_active=True, role__in=roles_with(Capability.REVIEW_ALERTS)).order_by("username")


class ChangeEventRow(TypedDict):
    """A change event on a forged-event alert's page: what the row claims, field names only."""

    id: int
    at: datetime.datetime
    category: str
    action: str
    object_type: str
    actor_username: str


class AuthEventRow(TypedDict):
    """An authentication event on an alert's page."""

    id: int
    at: datetime.datetime
    event: str
    username: str
    ip: str | None


class DirectChangeRow(TypedDict):
    """A sealed direct database change on an alert's page (the seal's copy of it)."""

    id: int
    change_at: datetime.datetime
    table_name: str
    operation: str
    row_id: int | None
    db_user: str
    client_addr: str
    verified: bool


class GrantSummary(TypedDict):
    """A break-the-glass grant on an alert's page: never its free-text explanation."""

    id: int
    user__username: str
    patient_id: int
    reason: str
    reason_label: str
    granted_at: datetime.datetime
    expires_at: datetime.datetime
    ended_at: datetime.datetime | None


class RuleFailureRow(TypedDict):
    """A rule that failed on an event, as the dashboard lists it (the exception's class name only)."""

    at: datetime.datetime
    rule: str
    kind: str
    object_id: int | None
    error: str


@dataclass(frozen=True)
class AlertContext:
    """Everything an alert's page shows besides the alert itself; metadata only."""

    access_events: list[dict[str, Any]]
    auth_events: list[AuthEventRow]
    change_events: list[ChangeEventRow]
    direct_changes: list[DirectChangeRow]
    grants: list[GrantSummary]
    user_recent: list[dict[str, Any]]
    patient_recent: list[dict[str, Any]]
    department: str


def alert_context(alert: Alert) -> AlertContext:
    """The events an alert is about, the user's recent activity and the patient's recent access.

    Eight small queries at most (the change events' only for a forged-event alert), each bounded (subjects are few; histories are cut at RECENT_ROWS).
    """
    ids: dict[str, list[int]] = {kind: [] for kind in AlertSubject.Kind.values}
    for kind, object_id in AlertSubject.objects.filter(alert=alert).values_list("kind", "object_id"):
        ids[kind].append(object_id)
    access = (
        _with_sections(AccessEvent.objects.filter(pk__in=ids["access"]).order_by("at").values(*ACCESS_COLUMNS_WHY))
        if ids["access"]
        else []
    )
    auth = (
        list(
            AuthEventRecord.objects.filter(pk__in=ids["auth"])
            .order_by("at")
            .values("id", "at", "event", "username", "ip")
        )
        if ids["auth"]
        else []
    )
    # Change events are linked only by the sealer's forged-event alert: what the row claims, field names only.
    change = (
        list(
            ChangeEvent.objects.filter(pk__in=ids["change"])
            .order_by("at")
            .values("id", "at", "category", "action", "object_type", "actor_username")
        )
        if ids["change"]
        else []
    )
    direct = (
        list(
            DirectChangeSeal.objects.filter(pk__in=ids["direct"])
            .order_by("change_at")
            .values("id", "change_at", "table_name", "operation", "row_id", "db_user", "client_addr", "verified")
        )
        if ids["direct"]
        else []
    )
    # The grant's free-text explanation may describe the patient's condition: not shown here.
    grant_rows = (
        BreakGlassGrant.objects.filter(pk__in=ids["grant"])
        .order_by("granted_at")
        .values("id", "user__username", "patient_id", "reason", "granted_at", "expires_at", "ended_at")
        if ids["grant"]
        else []
    )
    reasons = dict(BreakGlassGrant.Reason.choices)
    grants = [GrantSummary(**row, reason_label=reasons.get(row["reason"], row["reason"])) for row in grant_rows]
    user_recent = (
        _with_sections(
            AccessEvent.objects.filter(actor_id=alert.actor_id)
            .order_by("-at", "-id")
            .values(*ACCESS_COLUMNS_WHY)[:RECENT_ROWS]
        )
        if alert.actor_id is not None
        else []
    )
    patient_recent = (
        _with_sections(
            AccessEvent.objects.filter(patient_id=alert.patient_id)
            .order_by("-at", "-id")
            .values(*ACCESS_COLUMNS_WHY)[:RECENT_ROWS]
        )
        if alert.patient_id is not None
        else []
    )
    department = ""
    if alert.department_id is not None:
        department = Department.objects.filter(pk=alert.department_id).values_list("name", flat=True).first() or ""
    return AlertContext(access, auth, change, direct, grants, user_recent, patient_recent, department)


@dataclass(frozen=True)
class DashboardCounts:
    open_by_severity: list[tuple[str, int]]
    open_total: int
    acknowledged: int
    failures: list[RuleFailureRow]
    failures_total: int


# Rule failures older than this are history; the dashboard shows the recent ones.
FAILURE_WINDOW = datetime.timedelta(days=7)
FAILURE_ROWS = 5


def dashboard_counts(now: datetime.datetime) -> DashboardCounts:
    """Open alerts by severity, acknowledged ones, and recent rule failures: three queries."""
    by_status_severity = (
        Alert.objects.filter(status__in=[Alert.Status.OPEN, Alert.Status.ACKNOWLEDGED])
        .values_list("status", "severity")
        .annotate(n=Count("id"))
    )
    open_counts = dict.fromkeys(Alert.Severity.values, 0)
    acknowledged = 0
    for status, severity, n in by_status_severity:
        if status == Alert.Status.OPEN:
            open_counts[severity] = open_counts.get(severity, 0) + n
        else:
            acknowledged += n
    labels = dict(Alert.Severity.choices)
    recent = RuleFailure.objects.filter(at__gte=now - FAILURE_WINDOW)
    failures = list(recent.order_by("-at").values("at", "rule", "kind", "object_id", "error")[:FAILURE_ROWS])
    failures_total = recent.count() if len(failures) == FAILURE_ROWS else len(failures)
    return DashboardCounts(
        open_by_severity=[(labels[s], open_counts[s]) for s in sorted(open_counts, reverse=True)],
        open_total=sum(open_counts.values()),
        acknowledged=acknowledged,
        failures=failures,
        failures_total=failures_total,
    )


# The security dashboard lists this many of the newest open alerts; the queue holds the rest.
NEWEST_ALERTS = 5
# The rules that put an emergency (break-the-glass) grant up for review.
BREAK_GLASS_RULES = ("break_glass", "repeated_break_glass")


def newest_open_alerts(limit: int = NEWEST_ALERTS) -> list[dict[str, Any]]:
    """The newest open alerts' metadata (no patient, no notes): one query."""
    return [
        dict(row)
        for row in Alert.objects.filter(status=Alert.Status.OPEN)
        .order_by("-created_at", "-id")
        .values("id", "rule", "severity", "created_at", "actor_username", "actor_role")[:limit]
    ]


def break_glass_awaiting_review() -> int:
    """Emergency grants whose review alert is not closed yet: one query, a count."""
    return Alert.objects.filter(rule__in=BREAK_GLASS_RULES).exclude(status__in=Alert.CLOSED_STATUSES).count()
