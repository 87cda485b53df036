"""The security reports page: aggregates, charts drawn from json_script data under a strict CSP, CSVs."""

from __future__ import annotations

import csv
import datetime
import io
import json
import re
import time
from collections.abc import Callable

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from accounts.roles import Role
from accounts.services import VERIFIED_AT_KEY
from audit import security_reports
from audit.models import AccessEvent, Alert
from audit.services import access_event_record, auth_event_record
from records.models import BreakGlassGrant
from tests.audit.alert_helpers import make_alert
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db


def _seed(nurse: User, physician: User, ems: User) -> None:
    access_event_record(actor=nurse, patient_ids=[1, 2, 3], categories=["notes"], action="view", explanation="")
    access_event_record(actor=nurse, patient_ids=[4], categories=["notes"], action="view", explanation="care_team")
    access_event_record(actor=physician, patient_ids=[5], categories=["notes"], action="view", explanation="")
    access_event_record(
        actor=physician, patient_ids=[6, 7], categories=["notes"], action="view", explanation="attending"
    )
    # Not patient care: reads of the trail and searches without a patient are left out.
    access_event_record(actor=physician, patient_ids=[8], categories=["audit_trail"], action="view")
    access_event_record(actor=physician, patient_ids=[None], categories=["search"], action="search")
    make_alert(rule="same_surname")
    make_alert(rule="same_surname")
    make_alert(rule="after_hours")
    for event in ("login_failed", "login_failed", "lockout"):
        auth_event_record(event=event, actor=None, target=None, username="x", ip="10.0.0.1", user_agent="", detail={})
    now = timezone.now()
    patient = PatientFactory()
    grant = BreakGlassGrant(
        user=ems,
        patient=patient,
        reason=BreakGlassGrant.Reason.EMERGENCY_TREATMENT,
        explanation="unconscious at the scene",
        granted_at=now - datetime.timedelta(hours=2),
        expires_at=now - datetime.timedelta(hours=1),
    )
    grant.save()


def test_aggregates(nurse: User, physician: User, ems: User) -> None:
    _seed(nurse, physician, ems)
    charts = {c.slug: c for c in security_reports.all_charts(timezone.now())}
    per_rule = charts["alerts-per-rule"]
    assert list(zip(per_rule.labels, per_rule.datasets[0]["data"], strict=True)) == [
        ("same_surname", 2),
        ("after_hours", 1),
    ]
    assert sum(charts["alerts-per-day"].datasets[0]["data"]) == 3
    assert len(charts["alerts-per-day"].labels) == security_reports.DEFAULT_DAYS
    top = charts["top-unexplained-users"]
    assert top.labels == [f"{nurse.username} (nurse)", f"{physician.username} (physician)"]
    assert top.datasets[0]["data"] == [3, 1]
    rate = charts["explained-rate"]
    assert rate.labels[0] == "All departments"
    assert rate.datasets[0]["data"][0] == round(100 * 3 / 7, 1)
    assert rate.datasets[1]["data"][0] == 7
    assert sum(charts["grants-per-week"].datasets[0]["data"]) == 1
    failures = {d["label"]: sum(d["data"]) for d in charts["sign-in-failures"].datasets}
    assert failures == {"Failed passwords": 2, "Failed codes": 0, "Lockouts": 1}


def test_window_excludes_older_data(nurse: User) -> None:
    make_alert(occurred_at=timezone.now() - datetime.timedelta(days=40))
    charts = {c.slug: c for c in security_reports.all_charts(timezone.now(), 30)}
    assert charts["alerts-per-rule"].labels == []
    charts = {c.slug: c for c in security_reports.all_charts(timezone.now(), 92)}
    assert charts["alerts-per-rule"].datasets[0]["data"] == [1]


def test_page_renders_charts_from_json_script_without_inline_script(
    security: User,
    nurse: User,
    physician: User,
    ems: User,
    client_for: Callable[[User], Client],
    django_assert_max_num_queries: Callable[..., object],
) -> None:
    _seed(nurse, physician, ems)
    client = client_for(security)
    client.get(reverse("security:alerts"))
    with django_assert_max_num_queries(30):
        response = client.get(reverse("security:reports"))
    assert response.status_code == 200
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    body = response.content.decode()
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", body, flags=re.S)
    # Only the JSON data block and scripts loaded from our own static files; no inline code.
    for attrs, content in scripts:
        if 'type="application/json"' in attrs:
            continue
        assert 'src="/static/' in attrs
        assert content.strip() == ""
    assert "/static/vendor/chart.js-4.6.1/chart.umd.min.js" in body
    assert "/static/js/security-charts.js" in body
    assert "style=" not in body
    data = json.loads(re.search(r'id="security-chart-data" type="application/json">(.*?)</script>', body, re.S)[1])
    assert set(data) == set(security_reports.SLUGS)
    assert data["alerts-per-rule"]["labels"] == ["same_surname", "after_hours"]
    # Each chart has a table with the same figures, and a CSV link.
    assert body.count("<canvas") == len(security_reports.SLUGS)
    assert body.count("<table>") == len(security_reports.SLUGS)
    for slug in security_reports.SLUGS:
        assert reverse("security:report_csv", args=[slug]) in body
    recorded = AccessEvent.objects.filter(category="security_alert", action="view").latest("id")
    assert recorded.detail == {"view": "security_reports", "days": 30}


def test_page_query_count_does_not_grow_with_data(
    security: User, nurse: User, client_for: Callable[[User], Client], django_assert_max_num_queries: Callable
) -> None:
    for day in range(20):
        make_alert(rule=f"rule_{day % 5}", occurred_at=timezone.now() - datetime.timedelta(days=day))
    access_event_record(actor=nurse, patient_ids=list(range(1, 200)), categories=["notes"], action="view")
    client = client_for(security)
    client.get(reverse("security:alerts"))
    with django_assert_max_num_queries(30):
        assert client.get(reverse("security:reports"), {"days": "92"}).status_code == 200


def test_unknown_window_falls_back_to_the_default(security: User, client_for: Callable[[User], Client]) -> None:
    response = client_for(security).get(reverse("security:reports"), {"days": "100000"})
    assert response.context["days"] == 30


def test_csv_of_a_chart_with_the_formula_guard(
    security: User, make_persona: Callable[..., User], client_for: Callable[[User], Client]
) -> None:
    make_alert(rule="same_surname")
    evil = make_persona(Role.NURSE, username="=cmd|calc")
    access_event_record(actor=evil, patient_ids=[9], categories=["notes"], action="view", explanation="")
    client = client_for(security)
    response = client.get(reverse("security:report_csv", args=["top-unexplained-users"]))
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["User", "Unexplained accesses"]
    assert rows[1] == ["'=cmd|calc (nurse)", "1"]
    event = AccessEvent.objects.get(category="security_alert", action="export")
    assert event.detail == {"view": "security_report", "report": "top-unexplained-users", "days": 30}


def test_csv_needs_a_fresh_code_and_a_known_report(security: User, client_for: Callable[[User], Client]) -> None:
    client = client_for(security)
    assert client.get(reverse("security:report_csv", args=["nope"])).status_code == 404
    session = client.session
    session[VERIFIED_AT_KEY] = time.time() - 3600
    session.save()
    response = client.get(reverse("security:report_csv", args=["alerts-per-rule"]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:step_up"))


def test_static_files_exist() -> None:
    from django.contrib.staticfiles import finders

    assert finders.find("vendor/chart.js-4.6.1/chart.umd.min.js")
    assert finders.find("vendor/chart.js-4.6.1/LICENSE.md")
    assert finders.find("js/security-charts.js")


def test_alert_severity_labels_are_stable() -> None:
    assert dict(Alert.Severity.choices)[4] == "Critical"
