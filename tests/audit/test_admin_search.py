"""Searching the audit admin (by address, request id, rule, the user behind a verified marker), and the
refusals around its exports: an invalid filter, a stale one-time code, a method that is not GET."""

from __future__ import annotations

import datetime
from collections.abc import Callable

import pytest
from django.core.cache import cache
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from accounts.services import VERIFIED_AT_KEY
from audit import reports
from audit.models import AccessEvent, DirectChange, DirectChangeSeal
from audit.sealing import seal_direct_changes
from audit.services import auth_event_record
from healthcrypt.markers import make_marker
from records.models import BreakGlassGrant
from tests.audit.alert_helpers import make_alert
from tests.audit.test_admin import listed
from tests.factories import PatientFactory
from tests.records.conftest import Ward

pytestmark = pytest.mark.django_db


def changelist(model: str) -> str:
    return reverse(f"admin:{model}_changelist")


def trail_events() -> list[AccessEvent]:
    return list(AccessEvent.objects.filter(category=reports.AUDIT_TRAIL_CATEGORY).order_by("id"))


def stale_code(client: Client) -> None:
    session = client.session
    session[VERIFIED_AT_KEY] = 0  # the last one-time code is long past
    session.save()


@pytest.fixture(autouse=True)
def _fresh_filter_choices() -> None:
    cache.clear()


@pytest.fixture
def officer(compliance: User, client_for: Callable[[User], Client]) -> Client:
    return client_for(compliance)


@pytest.fixture
def chart_views(ward: Ward, physician: User, client_for: Callable[[User], Client]) -> list[AccessEvent]:
    """Two views of a chart, each with its own request id, from the test client's address."""
    client = client_for(physician)
    for request_id in ("req-aaaaaaaa", "req-bbbbbbbb"):
        url = reverse("records:chart", args=[ward.treated.pk])
        assert client.get(url, HTTP_X_REQUEST_ID=request_id).status_code == 200
    return list(AccessEvent.objects.filter(actor_id=physician.pk))


# --- Search -----------------------------------------------------------------------------------------


def test_access_events_are_found_by_request_id(chart_views: list[AccessEvent], officer: Client) -> None:
    found = listed(officer.get(changelist("audit_accessevent"), {"q": "req-aaaaaaaa"}))
    assert found
    assert {event.request_id for event in found} == {"req-aaaaaaaa"}


def test_access_and_auth_events_are_found_by_ip_address(
    chart_views: list[AccessEvent], physician: User, officer: Client
) -> None:
    address = chart_views[0].ip
    assert address
    found = listed(officer.get(changelist("audit_accessevent"), {"q": address}))
    assert {event.pk for event in chart_views} <= {event.pk for event in found}
    Client().post(reverse("accounts:login"), {"username": "nobody-here", "password": "guess"})
    auth = listed(officer.get(changelist("audit_autheventrecord"), {"q": address}))
    assert "login_failed" in {event.event for event in auth}
    # An address nobody came from finds nothing (the username part cannot match it either).
    assert listed(officer.get(changelist("audit_autheventrecord"), {"q": "192.0.2.77"})) == []


def test_auth_event_list_links_the_target_account(officer: Client, compliance: User, nurse: User) -> None:
    auth_event_record(
        event="role_changed", actor=compliance, target=nurse, username=nurse.username, ip=None, user_agent="", detail={}
    )
    response = officer.get(changelist("audit_autheventrecord"), {"target_id": nurse.pk})
    assert response.status_code == 200
    assert [event.target_id for event in listed(response)] == [nurse.pk]
    assert f"User #{nurse.pk}" in response.content.decode()


def test_direct_changes_are_found_by_the_username_behind_a_verified_marker(officer: Client, nurse: User) -> None:
    verified = DirectChange.objects.create(
        table_name="records_patient",
        operation="UPDATE",
        row_id=1,
        actor_marker=make_marker(actor=f"user:{nurse.pk}", txid=77),
        db_user="app",
        txid=77,
    )
    # The same marker text in another transaction does not verify: it is not the nurse's change.
    replayed = DirectChange.objects.create(
        table_name="records_note",
        operation="UPDATE",
        row_id=2,
        actor_marker=verified.actor_marker,
        db_user="psql",
        txid=78,
    )
    seal_direct_changes()
    assert DirectChangeSeal.objects.get(direct_change_id=replayed.pk).verified is False
    found = listed(officer.get(changelist("audit_directchange"), {"q": nurse.username}))
    assert [change.pk for change in found] == [verified.pk]
    page = officer.get(changelist("audit_directchange")).content.decode()
    assert f"User #{nurse.pk}" in page
    assert "NOT verified: outside the application" in page


def test_alerts_are_found_by_rule_and_grants_by_username(officer: Client, nurse: User, ems: User) -> None:
    about_nurse = make_alert(rule="same_surname", actor=nurse, patient_id=None)
    make_alert(rule="unexplained_view", actor=ems, patient_id=4242)
    found = listed(officer.get(changelist("audit_alert"), {"q": "surname"}))
    assert [alert.pk for alert in found] == [about_nurse.pk]
    assert "Patient #4242" in officer.get(changelist("audit_alert")).content.decode()
    now = timezone.now()
    grant = BreakGlassGrant(
        user=ems,
        patient=PatientFactory(),
        reason=BreakGlassGrant.Reason.UNABLE_TO_CONSENT,
        explanation="Found unresponsive",
        granted_at=now - datetime.timedelta(hours=3),
        expires_at=now - datetime.timedelta(hours=2),
    )
    grant.save()
    grants = listed(officer.get(changelist("records_breakglassgrant"), {"q": ems.username}))
    assert [g.pk for g in grants] == [grant.pk]
    assert listed(officer.get(changelist("records_breakglassgrant"), {"q": nurse.username})) == []


# --- Refusals around exports and the MRN form ----------------------------------------------------------


def test_export_with_an_invalid_filter_goes_to_the_error_page_and_records_nothing(
    chart_views: list[AccessEvent], officer: Client
) -> None:
    before = len(trail_events())
    response = officer.get(reverse("admin:audit_accessevent_export"), {"actor_id": "abc"})
    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")
    assert not isinstance(response, StreamingHttpResponse)
    assert len(trail_events()) == before


def test_export_by_post_is_refused_and_records_nothing(officer: Client) -> None:
    before = len(trail_events())
    assert officer.post(reverse("admin:audit_accessevent_export")).status_code == 405
    assert officer.post(reverse("admin:audit_report_user_export"), {"username": "nurse"}).status_code == 405
    assert len(trail_events()) == before


def test_export_action_asks_for_a_fresh_code_first(chart_views: list[AccessEvent], officer: Client) -> None:
    stale_code(officer)
    before = len(trail_events())
    response = officer.post(
        changelist("audit_accessevent"),
        {"action": "export_selected_csv", "_selected_action": [chart_views[0].pk]},
    )
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:step_up"))
    # Posted, so the way back is the list itself, not a replay of the post.
    assert "next=%2Fadmin%2Faudit%2Faccessevent%2F" in response["Location"]
    assert not [event for event in trail_events()[before:] if event.action == "export"]


def test_report_export_without_a_complete_form_goes_back_to_the_report(officer: Client) -> None:
    before = len(trail_events())
    response = officer.get(reverse("admin:audit_report_user_export"), {"date_from": "2026-01-01"})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:audit_report_user") + "?")
    assert len(trail_events()) == before


def test_mrn_that_cannot_be_an_mrn_is_not_looked_up(officer: Client) -> None:
    response = officer.post(reverse("admin:audit_report_patient"), {"mrn": "<script>", "date_from": "2026-01-01"})
    assert "No patient has this MRN." in response.content.decode()
    assert reports.patient_ids_for_mrn("x" * (reports.MRN_MAX_LENGTH + 1)) == []
    assert reports.patient_ids_for_mrn("   ") == []
