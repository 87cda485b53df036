"""The security and compliance dashboards: alert counts and the newest open alerts (metadata only),
current lockouts, emergency grants awaiting review; no patient data on either."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from audit.models import Alert
from tests.audit.alert_helpers import make_alert
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db


def section(html: str, testid: str) -> str:
    start = html.index(f'data-testid="{testid}"')
    return html[start : html.index("</section>", start)]


def test_security_dashboard_lists_the_newest_open_alerts_without_patient_data(
    security: User, nurse: User, client_for: Callable[[User], Client]
) -> None:
    patient = PatientFactory(family_name="Alertsurname")
    closed = make_alert(rule="bulk_browsing", status=Alert.Status.CLOSED_JUSTIFIED, actor=nurse)
    newest = make_alert(rule="after_hours", severity=Alert.Severity.HIGH, actor=nurse, patient_id=patient.pk)
    html = client_for(security).get(reverse("accounts:dashboard")).content.decode()
    panel = section(html, "newest-alerts")
    assert reverse("security:alert", args=[newest.pk]) in panel
    assert "after_hours" in panel
    assert nurse.username in panel
    assert reverse("security:alert", args=[closed.pk]) not in panel
    assert "ALERTSURNAME" not in html.upper()
    assert patient.mrn not in html
    assert f"{reverse('security:alerts')}?status=open" in html


def test_security_dashboard_counts_current_lockouts(security: User, client_for: Callable[[User], Client]) -> None:
    for username in ("alice", "bob"):
        AccessAttempt.objects.create(
            username=username,
            ip_address="203.0.113.9",
            user_agent="test",
            failures_since_start=settings.AXES_FAILURE_LIMIT,
            attempt_time=timezone.now(),
        )
    AccessAttempt.objects.create(
        username="carol",
        ip_address="203.0.113.10",
        user_agent="test",
        failures_since_start=1,
        attempt_time=timezone.now(),
    )
    panel = section(client_for(security).get(reverse("accounts:dashboard")).content.decode(), "lockouts-panel")
    assert "<strong>2</strong> accounts" in panel
    assert reverse("accounts:lockouts") in panel


def test_compliance_dashboard_counts_grants_awaiting_review(
    compliance: User, ems: User, client_for: Callable[[User], Client]
) -> None:
    make_alert(rule="break_glass", actor=ems)
    make_alert(rule="repeated_break_glass", status=Alert.Status.ACKNOWLEDGED, actor=ems)
    make_alert(rule="break_glass", status=Alert.Status.CLOSED_JUSTIFIED, actor=ems)
    make_alert(rule="after_hours", actor=ems)
    panel = section(client_for(compliance).get(reverse("accounts:dashboard")).content.decode(), "break-glass-review")
    assert "<strong>2</strong> break-the-glass grants awaiting review" in panel
    assert reverse("admin:audit_alert_changelist") in panel


@pytest.mark.parametrize("role", ["security", "compliance"])
def test_oversight_dashboard_query_count_does_not_grow_with_alerts(
    role: str,
    security: User,
    compliance: User,
    nurse: User,
    client_for: Callable[[User], Client],
    django_assert_max_num_queries: Callable[..., object],
) -> None:
    user = {"security": security, "compliance": compliance}[role]
    for _ in range(12):
        make_alert(rule="break_glass", actor=nurse)
    client = client_for(user)
    with django_assert_max_num_queries(14):
        assert client.get(reverse("accounts:dashboard")).status_code == 200
