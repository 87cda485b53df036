"""Aggregates behind the security reports page (charts drawn in the browser, tables and CSV beside them).

Every figure is one set-based query (``values()`` + ``annotate()``, ``TruncDay``/``TruncWeek``) over a
bounded window (DEFAULT_DAYS, at most MAX_DAYS), so the page costs the same few queries whatever the
size of the trail. Nothing here reads a patient: users appear by username, departments by name.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, OuterRef, Q, Subquery
from django.db.models.functions import TruncDay, TruncWeek

from accounts.models import Department, User
from accounts.signals import AuthEvent
from audit.models import AccessEvent, Alert, AuthEventRecord, shows_section
from audit.reports import AUDIT_TRAIL_CATEGORY
from records.models import BreakGlassGrant

DEFAULT_DAYS = 30
# A quarter: long enough for trends, short enough that each aggregate stays an index range scan.
MAX_DAYS = 92
WINDOW_CHOICES = (7, 30, 92)
TOP_USERS = 10
# The view of an alert's page by the security team itself (audit/views_security.py).
SECURITY_CATEGORY = "security_alert"
# What an access nobody could explain looks like on the stored event: no explanation at all (reads
# written before explanations existed, or by a path that gives none) or the policy's refusal names.
UNEXPLAINED = ("", "unexplained", "no_relationship", "none")
# Reads of the trail itself and the security team's own work are not patient care: left out.
NOT_CARE = (AUDIT_TRAIL_CATEGORY, SECURITY_CATEGORY)


@dataclass
class Chart:
    """One chart: what the browser draws (labels x datasets) and the table and CSV beside it."""

    slug: str
    title: str
    kind: str  # "bar" or "line"
    label_heading: str
    labels: list[str] = field(default_factory=list)
    datasets: list[dict[str, Any]] = field(default_factory=list)  # {"label": str, "data": [numbers]}
    note: str = ""
    y_max: int | None = None  # 100 for percentages

    def as_json(self) -> dict[str, Any]:
        return {
            "slug": self.slug,
            "kind": self.kind,
            "labels": self.labels,
            "datasets": self.datasets,
            "yMax": self.y_max,
        }

    def header(self) -> list[str]:
        return [self.label_heading, *[d["label"] for d in self.datasets]]

    def rows(self) -> list[list[Any]]:
        return [[label, *[d["data"][i] for d in self.datasets]] for i, label in enumerate(self.labels)]


def _patient_reads(since: datetime.datetime) -> Any:
    # One event per access (per patient shown); reads written before events listed their sections
    # count once per section shown, as they were stored.
    reads = AccessEvent.objects.filter(at__gte=since, patient_id__isnull=False)
    for section in NOT_CARE:
        reads = reads.exclude(shows_section(section))
    return reads


def _unexplained() -> Q:
    return Q(explanation__in=UNEXPLAINED)


def _days(since: datetime.datetime, until: datetime.datetime) -> list[datetime.date]:
    start = since.date()
    return [start + datetime.timedelta(days=n) for n in range((until.date() - start).days + 1)]


def _day_key(value: Any) -> datetime.date:
    return value.date() if isinstance(value, datetime.datetime) else value


# Alerts are counted by when what they are about happened (``occurred_at``), not when they were raised:
# a scan_access over last month's events raises its alerts today, and the trend must still show last month.


def alerts_per_rule(since: datetime.datetime, until: datetime.datetime) -> Chart:
    rows = (
        Alert.objects.filter(occurred_at__gte=since, occurred_at__lt=until)
        .values_list("rule")
        .annotate(n=Count("id"))
        .order_by("-n", "rule")
    )
    chart = Chart("alerts-per-rule", "Alerts per rule", "bar", "Rule")
    data = list(rows)
    chart.labels = [rule for rule, _ in data]
    chart.datasets = [{"label": "Alerts", "data": [n for _, n in data]}]
    return chart


def alerts_per_day(since: datetime.datetime, until: datetime.datetime) -> Chart:
    rows = (
        Alert.objects.filter(occurred_at__gte=since, occurred_at__lt=until)
        .annotate(day=TruncDay("occurred_at"))
        .values_list("day")
        .annotate(n=Count("id"))
        .order_by("day")
    )
    counts = {_day_key(day): n for day, n in rows}
    days = _days(since, until)
    chart = Chart("alerts-per-day", "Alerts per day", "line", "Day")
    chart.labels = [day.isoformat() for day in days]
    chart.datasets = [{"label": "Alerts", "data": [counts.get(day, 0) for day in days]}]
    return chart


def top_unexplained_users(since: datetime.datetime, until: datetime.datetime) -> Chart:
    rows = (
        _patient_reads(since)
        .filter(_unexplained(), at__lt=until, actor_id__isnull=False)
        .values_list("actor_username", "actor_role")
        .annotate(n=Count("id"))
        .order_by("-n", "actor_username")[:TOP_USERS]
    )
    chart = Chart(
        "top-unexplained-users",
        "Top users by unexplained accesses",
        "bar",
        "User",
        note="Patient reads with no care relationship, order, encounter or grant to explain them.",
    )
    data = list(rows)
    chart.labels = [f"{username} ({role})" if role else username for username, role, _ in data]
    chart.datasets = [{"label": "Unexplained accesses", "data": [n for _, _, n in data]}]
    return chart


def explained_rate(since: datetime.datetime, until: datetime.datetime) -> Chart:
    """The share of patient reads with an explanation, overall and per department of the reader."""
    department = Subquery(User.objects.filter(pk=OuterRef("actor_id")).values("department_id")[:1])
    rows = (
        _patient_reads(since)
        .filter(at__lt=until)
        .annotate(department=department)
        .values_list("department")
        .annotate(total=Count("id"), unexplained=Count("id", filter=_unexplained()))
        .order_by("department")
    )
    names = dict(Department.objects.values_list("id", "name"))
    labels, rates, totals = [], [], []
    grand_total = grand_unexplained = 0
    for department_id, total, unexplained in rows:
        grand_total += total
        grand_unexplained += unexplained
        labels.append(names.get(department_id, "No department") if department_id else "No department")
        rates.append(_percent(total - unexplained, total))
        totals.append(total)
    chart = Chart("explained-rate", "Explained-access rate (%)", "bar", "Department", y_max=100)
    chart.labels = ["All departments", *labels]
    chart.datasets = [
        {"label": "Explained (%)", "data": [_percent(grand_total - grand_unexplained, grand_total), *rates]},
        {"label": "Accesses", "data": [grand_total, *totals], "hidden": True},
    ]
    return chart


def _percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 1) if whole else 0.0


def grants_per_week(since: datetime.datetime, until: datetime.datetime) -> Chart:
    rows = (
        BreakGlassGrant.objects.filter(granted_at__gte=since, granted_at__lt=until)
        .annotate(week=TruncWeek("granted_at"))
        .values_list("week")
        .annotate(n=Count("id"))
        .order_by("week")
    )
    counts = {_day_key(week): n for week, n in rows}
    first = since.date() - datetime.timedelta(days=since.date().weekday())
    weeks = []
    week = first
    while week <= until.date():
        weeks.append(week)
        week += datetime.timedelta(days=7)
    chart = Chart("grants-per-week", "Break-the-glass grants per week", "bar", "Week starting")
    chart.labels = [w.isoformat() for w in weeks]
    chart.datasets = [{"label": "Grants", "data": [counts.get(w, 0) for w in weeks]}]
    return chart


SIGN_IN_EVENTS = (
    (AuthEvent.LOGIN_FAILED, "Failed passwords"),
    (AuthEvent.OTP_FAILED, "Failed codes"),
    (AuthEvent.LOCKOUT, "Lockouts"),
)


def sign_in_failures(since: datetime.datetime, until: datetime.datetime) -> Chart:
    rows = (
        AuthEventRecord.objects.filter(
            at__gte=since, at__lt=until, event__in=[str(event) for event, _ in SIGN_IN_EVENTS]
        )
        .annotate(day=TruncDay("at"))
        .values_list("day", "event")
        .annotate(n=Count("id"))
        .order_by("day")
    )
    counts = {(_day_key(day), event): n for day, event, n in rows}
    days = _days(since, until)
    chart = Chart("sign-in-failures", "Lockouts and failed sign-ins per day", "line", "Day")
    chart.labels = [day.isoformat() for day in days]
    chart.datasets = [
        {"label": label, "data": [counts.get((day, str(event)), 0) for day in days]} for event, label in SIGN_IN_EVENTS
    ]
    return chart


BUILDERS: Sequence[Callable[[datetime.datetime, datetime.datetime], Chart]] = (
    alerts_per_rule,
    alerts_per_day,
    top_unexplained_users,
    explained_rate,
    grants_per_week,
    sign_in_failures,
)
SLUGS = (
    "alerts-per-rule",
    "alerts-per-day",
    "top-unexplained-users",
    "explained-rate",
    "grants-per-week",
    "sign-in-failures",
)


def window(now: datetime.datetime, days: int) -> tuple[datetime.datetime, datetime.datetime]:
    """``[midnight days-1 days ago, now]``: whole days back to the start, up to this moment."""
    days = max(1, min(days, MAX_DAYS))
    start = (now - datetime.timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, now


def all_charts(now: datetime.datetime, days: int = DEFAULT_DAYS) -> list[Chart]:
    since, until = window(now, days)
    return [build(since, until) for build in BUILDERS]


def chart_by_slug(slug: str, now: datetime.datetime, days: int = DEFAULT_DAYS) -> Chart | None:
    if slug not in SLUGS:
        return None
    since, until = window(now, days)
    return BUILDERS[SLUGS.index(slug)](since, until)
