"""The security team's workspace under /security/: queue, an alert's page, its actions, exports, permissions."""

from __future__ import annotations

import csv
import datetime
import io
import time
from collections.abc import Callable

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from accounts.roles import ROLE_POLICIES, Capability, Role
from accounts.services import VERIFIED_AT_KEY
from audit.models import AccessEvent, Alert, AlertSubject, ChangeEvent, RuleFailure
from audit.services import access_event_record
from audit.urls import urlpatterns
from tests.audit.alert_helpers import make_alert

pytestmark = pytest.mark.django_db

# Every route of audit/urls.py: (name, method, needs an alert id). A new route must be listed here.
ROUTES = [
    ("alerts", "GET", False),
    ("alerts_acknowledge", "POST", False),
    ("alerts_export", "POST", False),
    ("alert", "GET", True),
    ("alert_acknowledge", "POST", True),
    ("alert_assign", "POST", True),
    ("alert_note", "POST", True),
    ("alert_close", "POST", True),
    ("reports", "GET", False),
    ("report_csv", "GET", False),
]


def url(name: str, alert: Alert | None = None) -> str:
    if name == "report_csv":
        return reverse("security:report_csv", args=["alerts-per-rule"])
    return reverse(f"security:{name}", args=[alert.pk] if alert is not None else [])


def test_every_security_url_is_in_the_matrix() -> None:
    assert {p.name for p in urlpatterns} == {name for name, _, _ in ROUTES}


@pytest.mark.parametrize(("name", "method", "needs_alert"), ROUTES, ids=[r[0] for r in ROUTES])
@pytest.mark.parametrize("role", list(Role))
def test_matrix_only_review_alerts_gets_in(
    role: Role,
    name: str,
    method: str,
    needs_alert: bool,
    make_persona: Callable[..., User],
    client_for: Callable[[User], Client],
) -> None:
    user = make_persona(role)
    alert = make_alert()
    client = client_for(user)
    target = url(name, alert if needs_alert else None)
    response = client.get(target) if method == "GET" else client.post(target, {})
    if Capability.REVIEW_ALERTS not in ROLE_POLICIES[role].capabilities:
        assert response.status_code == 403, (role, name)
        assert Alert.objects.get(pk=alert.pk).status == Alert.Status.OPEN
        assert not ChangeEvent.objects.filter(category="alert").exists()
    else:
        assert response.status_code in (200, 302, 400), (role, name, response.status_code)


@pytest.mark.parametrize(("name", "method", "needs_alert"), ROUTES, ids=[r[0] for r in ROUTES])
def test_wrong_method_is_405(
    name: str, method: str, needs_alert: bool, security: User, client_for: Callable[[User], Client]
) -> None:
    alert = make_alert()
    client = client_for(security)
    target = url(name, alert if needs_alert else None)
    response = client.post(target, {}) if method == "GET" else client.get(target)
    assert response.status_code == 405


def test_anonymous_is_sent_to_sign_in(client: Client) -> None:
    response = client.get(reverse("security:alerts"))
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


@pytest.mark.parametrize("name", ["alert", "alert_acknowledge", "alert_assign", "alert_note", "alert_close"])
def test_nonexistent_alert_is_404(name: str, security: User, client_for: Callable[[User], Client]) -> None:
    client = client_for(security)
    target = reverse(f"security:{name}", args=[999_999])
    response = client.get(target) if name == "alert" else client.post(target, {"note": "x", "resolution": "justified"})
    assert response.status_code == 404


def test_queue_lists_filters_and_records_the_view(
    security: User, nurse: User, client_for: Callable[[User], Client]
) -> None:
    mine = make_alert(rule="same_surname", severity=Alert.Severity.HIGH, actor=nurse, patient_id=77)
    other = make_alert(rule="after_hours", severity=Alert.Severity.LOW)
    client = client_for(security)
    response = client.get(reverse("security:alerts"))
    assert response.status_code == 200
    assert [a.pk for a in response.context["alerts"]] == [mine.pk, other.pk]  # severity first
    assert b"Patient #77" in response.content
    assert nurse.department.name in response.content.decode()
    response = client.get(reverse("security:alerts"), {"rule": "after_hours"})
    assert [a.pk for a in response.context["alerts"]] == [other.pk]
    response = client.get(reverse("security:alerts"), {"severity": "3", "user": nurse.username})
    assert [a.pk for a in response.context["alerts"]] == [mine.pk]
    response = client.get(reverse("security:alerts"), {"department": nurse.department_id})
    assert [a.pk for a in response.context["alerts"]] == [mine.pk]
    event = AccessEvent.objects.filter(category="security_alert", action="list").latest("id")
    assert event.actor_id == security.pk
    assert event.detail["filters"]["department_id"] == nurse.department_id
    # A typed username is not copied into the trail, only that there was one.
    assert nurse.username not in str(AccessEvent.objects.filter(category="security_alert").values_list("detail"))


def test_queue_filters_status_and_dates(security: User, client_for: Callable[[User], Client]) -> None:
    old = make_alert(occurred_at=timezone.now() - datetime.timedelta(days=10))
    new = make_alert(status=Alert.Status.ACKNOWLEDGED)
    closed = make_alert(status=Alert.Status.CLOSED_VIOLATION)
    client = client_for(security)
    since = (timezone.now() - datetime.timedelta(days=2)).date().isoformat()
    response = client.get(reverse("security:alerts"), {"date_from": since})
    assert {a.pk for a in response.context["alerts"]} == {new.pk, closed.pk}
    response = client.get(reverse("security:alerts"), {"status": "active", "sort": "oldest"})
    assert [a.pk for a in response.context["alerts"]] == [old.pk, new.pk]
    response = client.get(reverse("security:alerts"), {"status": "closed_violation"})
    assert [a.pk for a in response.context["alerts"]] == [closed.pk]


def test_queue_refuses_bad_filters(security: User, client_for: Callable[[User], Client]) -> None:
    client = client_for(security)
    for bad in ({"severity": "9"}, {"rule": "Robert'); DROP"}, {"date_from": "yesterday"}, {"status": "nope"}):
        assert client.get(reverse("security:alerts"), bad).status_code == 400


def test_queue_pages_with_bounded_queries(
    security: User, client_for: Callable[[User], Client], django_assert_max_num_queries: Callable[..., object]
) -> None:
    for _ in range(60):
        make_alert()
    client = client_for(security)
    client.get(reverse("security:alerts"))  # warm the session
    with django_assert_max_num_queries(26):
        response = client.get(reverse("security:alerts"))
    assert len(response.context["alerts"]) == 50
    with django_assert_max_num_queries(26):
        response = client.get(reverse("security:alerts"), {"page": 2})
    assert len(response.context["alerts"]) == 10


def test_bulk_acknowledge_from_the_queue(security: User, client_for: Callable[[User], Client]) -> None:
    one, two, three = make_alert(), make_alert(), make_alert()
    response = client_for(security).post(reverse("security:alerts_acknowledge"), {"alert": [one.pk, two.pk]})
    assert response.status_code == 302
    assert Alert.objects.get(pk=one.pk).status == Alert.Status.ACKNOWLEDGED
    assert Alert.objects.get(pk=three.pk).status == Alert.Status.OPEN
    assert set(ChangeEvent.objects.filter(category="alert").values_list("object_id", flat=True)) == {one.pk, two.pk}


def test_alert_page_shows_metadata_only_and_is_an_access_event(
    security: User,
    nurse: User,
    client_for: Callable[[User], Client],
    django_assert_max_num_queries: Callable[..., object],
) -> None:
    (event,) = access_event_record(
        actor=nurse, patient_ids=[55], categories=["medications"], action="view", explanation=""
    )
    access_event_record(actor=nurse, patient_ids=[56], categories=["notes"], action="view", explanation="care_team")
    alert = make_alert(actor=nurse, patient_id=55, subjects=[("access", event.pk)])
    alert.notes = "secret investigator note"
    alert.save()
    client = client_for(security)
    client.get(reverse("security:alerts"))
    with django_assert_max_num_queries(30):
        response = client.get(reverse("security:alert", args=[alert.pk]))
    assert response.status_code == 200
    ctx = response.context["ctx"]
    assert [e["id"] for e in ctx.access_events] == [event.pk]
    assert {e["patient_id"] for e in ctx.user_recent} >= {55, 56}
    assert [e["actor_username"] for e in ctx.patient_recent if e["category"] == "medications"] == [nurse.username]
    body = response.content.decode()
    assert "none (unexplained)" in body
    assert "secret investigator note" in body  # the analyst's own note is shown on the alert's page
    recorded = AccessEvent.objects.filter(category="security_alert", action="review").latest("id")
    assert (recorded.actor_id, recorded.patient_id, recorded.detail) == (
        security.pk,
        55,
        {"view": "alert", "alert_id": alert.pk},
    )
    assert recorded.explanation == "security_review"


def test_close_from_the_page_with_a_resolution(security: User, client_for: Callable[[User], Client]) -> None:
    alert = make_alert()
    client = client_for(security)
    response = client.post(
        reverse("security:alert_close", args=[alert.pk]), {"resolution": "violation", "note": "No relationship"}
    )
    assert response.status_code == 302
    alert.refresh_from_db()
    assert alert.status == Alert.Status.CLOSED_VIOLATION
    (event,) = ChangeEvent.objects.filter(category="alert", object_id=alert.pk)
    assert (event.action, event.actor_id) == ("close_violation", security.pk)
    # Closing again is a conflict, shown on the page.
    again = client.post(reverse("security:alert_close", args=[alert.pk]), {"resolution": "justified", "note": "x"})
    assert again.status_code == 409


def test_close_without_a_note_is_400_and_changes_nothing(security: User, client_for: Callable[[User], Client]) -> None:
    alert = make_alert()
    response = client_for(security).post(reverse("security:alert_close", args=[alert.pk]), {"resolution": "justified"})
    assert response.status_code == 400
    assert Alert.objects.get(pk=alert.pk).status == Alert.Status.OPEN
    assert not ChangeEvent.objects.filter(category="alert").exists()


def test_acknowledge_assign_and_note_from_the_page(
    security: User, make_persona: Callable[..., User], client_for: Callable[[User], Client]
) -> None:
    colleague = make_persona(Role.SECURITY, username="security2")
    alert = make_alert()
    client = client_for(security)
    assert client.post(reverse("security:alert_acknowledge", args=[alert.pk])).status_code == 302
    assert client.post(reverse("security:alert_acknowledge", args=[alert.pk])).status_code == 409
    assert client.post(reverse("security:alert_assign", args=[alert.pk]), {"assignee": colleague.pk}).status_code == 302
    assert client.post(reverse("security:alert_note", args=[alert.pk]), {"note": "Asked the ward"}).status_code == 302
    assert client.post(reverse("security:alert_note", args=[alert.pk]), {"note": ""}).status_code == 400
    alert.refresh_from_db()
    assert alert.assignee == colleague
    assert "Asked the ward" in alert.notes
    actions = list(
        ChangeEvent.objects.filter(object_id=alert.pk, category="alert").order_by("id").values_list("action")
    )
    assert actions == [("acknowledge",), ("assign",), ("note",)]


def test_assign_to_someone_outside_the_team_is_refused(
    security: User, nurse: User, client_for: Callable[[User], Client]
) -> None:
    alert = make_alert()
    response = client_for(security).post(reverse("security:alert_assign", args=[alert.pk]), {"assignee": nurse.pk})
    assert response.status_code == 400
    assert Alert.objects.get(pk=alert.pk).assignee_id is None


def _stale(client: Client) -> None:
    session = client.session
    session[VERIFIED_AT_KEY] = time.time() - 3600
    session.save()


def test_export_needs_a_fresh_code(security: User, client_for: Callable[[User], Client]) -> None:
    make_alert()
    client = client_for(security)
    _stale(client)
    response = client.post(reverse("security:alerts_export"), {"rule": "unexplained_view"})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:step_up"))
    assert not AccessEvent.objects.filter(category="security_alert", action="export").exists()


def test_export_streams_filtered_csv_with_the_formula_guard(
    security: User, client_for: Callable[[User], Client]
) -> None:
    evil = make_alert(rule="bulk_browsing", reason='=HYPERLINK("http://x")')
    evil.notes = "never exported"
    evil.save()
    make_alert(rule="after_hours")
    response = client_for(security).post(reverse("security:alerts_export"), {"rule": "bulk_browsing"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "no-store" in response["Cache-Control"]
    body = b"".join(response.streaming_content).decode()
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0][:4] == ["id", "created_at", "occurred_at", "rule"]
    assert len(rows) == 2
    assert rows[1][6] == '\'=HYPERLINK("http://x")'
    assert "never exported" not in body
    event = AccessEvent.objects.get(category="security_alert", action="export")
    assert event.detail["filters"]["rule"] == "bulk_browsing"


def test_dashboard_panel_counts_open_alerts_and_lists_rule_failures(
    security: User, client_for: Callable[[User], Client]
) -> None:
    make_alert(severity=Alert.Severity.CRITICAL)
    make_alert(severity=Alert.Severity.LOW, status=Alert.Status.ACKNOWLEDGED)
    RuleFailure.objects.create(rule="vip_patient", kind="access", object_id=12, error="KeyError")
    response = client_for(security).get(reverse("accounts:dashboard"))
    body = response.content.decode()
    assert "Open alerts" in body
    assert "Critical</span>: 1" in body
    assert "vip_patient on access #12: KeyError" in body
    assert reverse("security:alerts") in body


def test_nav_shows_alerts_to_security_only(security: User, nurse: User, client_for: Callable[[User], Client]) -> None:
    assert reverse("security:alerts") in client_for(security).get(reverse("accounts:lockouts")).content.decode()
    assert reverse("security:alerts") not in client_for(nurse).get(reverse("accounts:dashboard")).content.decode()


def test_subjects_of_every_kind_are_listed(security: User, client_for: Callable[[User], Client]) -> None:
    alert = make_alert(subjects=[("auth", 999_001), ("direct", 999_002), ("grant", 999_003)])
    assert AlertSubject.objects.filter(alert=alert).count() == 3
    response = client_for(security).get(reverse("security:alert", args=[alert.pk]))
    assert response.status_code == 200  # missing objects are simply not listed
