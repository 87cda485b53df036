"""Step-up before clinical data, idle time-out, absolute lifetime, password change, lockout desk, admin door."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.middleware import LAST_SEEN_STEP_SECONDS
from accounts.models import Department, User
from accounts.roles import Role
from accounts.services import user_role_change, username_for_records
from accounts.signals import AuthEvent
from tests.accounts.helpers import code_step, current_code, is_signed_in, password_step
from tests.conftest import totp_device
from tests.factories import TEST_PASSWORD

pytestmark = pytest.mark.django_db

CHART = "/test/chart/?section=notes"

# --- Step-up --------------------------------------------------------------------------------------


@pytest.mark.urls("tests.urls")
def test_chart_opens_right_after_sign_in(clock: Any, client_for: Callable[[User], Client], physician: User) -> None:
    assert client_for(physician).get(CHART).content == b"CHART CONTENT"


@pytest.mark.urls("tests.urls")
def test_step_up_round_trip_returns_to_the_page_asked_for(
    clock: Any, client_for: Callable[[User], Client], physician: User, events: list[dict[str, Any]]
) -> None:
    client = client_for(physician)
    clock.shift(datetime.timedelta(minutes=10, seconds=1))
    response = client.get(CHART)
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:step_up") + "?next=%2Ftest%2Fchart%2F%3Fsection%3Dnotes"
    page = client.get(response["Location"])
    assert b"Confirm it is you" in page.content
    response = client.post(response["Location"], {"otp_token": current_code(totp_device(physician)), "next": CHART})
    assert response["Location"] == CHART
    assert client.get(CHART).content == b"CHART CONTENT"
    assert AuthEvent.STEP_UP in [e["event"] for e in events]


@pytest.mark.urls("tests.urls")
def test_expired_step_up_with_a_wrong_code_shows_no_data(
    clock: Any, client_for: Callable[[User], Client], physician: User
) -> None:
    client = client_for(physician)
    clock.shift(datetime.timedelta(minutes=11))
    response = client.post(reverse("accounts:step_up") + "?next=/test/chart/", {"otp_token": "000000"})
    assert response.status_code == 200
    assert b"not right" in response.content
    assert client.get(CHART).status_code == 302
    assert AccessAttempt.objects.get(username="physician").failures_since_start == 1


@pytest.mark.urls("tests.urls")
def test_adding_data_does_not_need_step_up(clock: Any, client_for: Callable[[User], Client], physician: User) -> None:
    client = client_for(physician)
    clock.shift(datetime.timedelta(minutes=12))
    assert client.post("/test/vitals/").status_code == 201


@pytest.mark.urls("tests.urls")
def test_step_up_next_only_accepts_local_paths(
    clock: Any, client_for: Callable[[User], Client], physician: User
) -> None:
    client = client_for(physician)
    clock.shift(datetime.timedelta(minutes=11))
    response = client.post(
        reverse("accounts:step_up"),
        {"otp_token": current_code(totp_device(physician)), "next": "https://evil.example/"},
    )
    assert response["Location"] == "/"


# --- Idle time-out and absolute lifetime ----------------------------------------------------------


def test_idle_session_is_signed_out(
    clock: Any, client_for: Callable[[User], Client], physician: User, events: list[dict[str, Any]]
) -> None:
    client = client_for(physician)
    clock.shift(datetime.timedelta(minutes=15, seconds=1))
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))
    assert not is_signed_in(client)
    assert b"signed out after 15 minutes without activity" in client.get(response["Location"]).content
    assert [e["event"] for e in events] == [AuthEvent.IDLE_LOGOUT]


def test_activity_keeps_the_session_alive(clock: Any, client_for: Callable[[User], Client], physician: User) -> None:
    client = client_for(physician)
    for _ in range(4):
        clock.shift(datetime.timedelta(minutes=14))
        assert client.get("/").status_code == 200


def _session_writes(client: Client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/").status_code == 200
    return sum(1 for q in queries.captured_queries if "django_session" in q["sql"] and "UPDATE" in q["sql"].upper())


def test_a_request_within_the_step_does_not_write_the_session(
    clock: Any, client_for: Callable[[User], Client], physician: User
) -> None:
    client = client_for(physician)
    clock.shift(datetime.timedelta(seconds=LAST_SEEN_STEP_SECONDS + 1))
    assert _session_writes(client) == 1  # the idle clock moves
    clock.shift(datetime.timedelta(seconds=LAST_SEEN_STEP_SECONDS - 5))
    assert _session_writes(client) == 0  # it is fresh enough: no write


def test_the_slack_of_the_idle_clock_errs_towards_signing_out(
    clock: Any, client_for: Callable[[User], Client], physician: User
) -> None:
    client = client_for(physician)
    clock.shift(datetime.timedelta(seconds=LAST_SEEN_STEP_SECONDS - 1))
    assert client.get("/").status_code == 200  # a request that does not move the clock
    # 15 minutes after the clock last moved: signed out, though the last request was 14 min 1 s ago.
    clock.shift(datetime.timedelta(minutes=15, seconds=1) - datetime.timedelta(seconds=LAST_SEEN_STEP_SECONDS - 1))
    response = client.get("/")
    assert response.status_code == 302
    assert not is_signed_in(client)


def test_session_ends_after_its_absolute_lifetime_despite_activity(
    clock: Any, client_for: Callable[[User], Client], physician: User
) -> None:
    client = client_for(physician)
    for _ in range(51):  # 51 x 14 min = 11 h 54 min
        clock.shift(datetime.timedelta(minutes=14))
        assert client.get("/").status_code == 200
    clock.shift(datetime.timedelta(minutes=14))
    response = client.get("/")
    assert response["Location"].startswith(reverse("accounts:login"))


# --- Password change ------------------------------------------------------------------------------


def change(client: Client, *, old: str = TEST_PASSWORD, new: str = "a new and long passphrase 7", code: str) -> Any:
    return client.post(
        reverse("accounts:password_change"),
        {"old_password": old, "new_password1": new, "new_password2": new, "otp_token": code},
    )


def test_password_change_needs_current_password_and_code(
    clock: Any, client_for: Callable[[User], Client], physician: User, events: list[dict[str, Any]]
) -> None:
    client = client_for(physician)
    device = totp_device(physician)
    clock.shift(datetime.timedelta(minutes=1))
    response = change(client, code=current_code(device))
    assert response["Location"] == "/"
    assert is_signed_in(client)  # this session stays signed in
    physician.refresh_from_db()
    assert physician.check_password("a new and long passphrase 7")
    assert AuthEvent.PASSWORD_CHANGED in [e["event"] for e in events]


def test_password_change_with_wrong_code_changes_nothing(
    clock: Any, client_for: Callable[[User], Client], physician: User
) -> None:
    client = client_for(physician)
    response = change(client, code="000000")
    assert response.status_code == 200
    assert b"not right" in response.content
    physician.refresh_from_db()
    assert physician.check_password(TEST_PASSWORD)


def test_password_change_with_wrong_current_password_changes_nothing(
    clock: Any, client_for: Callable[[User], Client], physician: User
) -> None:
    response = change(client_for(physician), old="not my password", code=current_code(totp_device(physician)))
    assert response.status_code == 200
    assert b"old password was entered incorrectly" in response.content


@pytest.mark.parametrize(
    ("new", "message"),
    [("short pass", b"at least 12 characters"), ("password1234", b"too common"), ("381947562093", b"entirely numeric")],
)
def test_weak_new_password_is_refused_with_the_reason(
    clock: Any, client_for: Callable[[User], Client], physician: User, new: str, message: bytes
) -> None:
    response = change(client_for(physician), new=new, code=current_code(totp_device(physician)))
    assert response.status_code == 200
    assert message in response.content


def test_argon2_hashes_new_passwords_in_production_settings() -> None:
    from healthcrypt import settings as production_settings

    assert production_settings.PASSWORD_HASHERS[0].endswith("Argon2PasswordHasher")


# --- The security desk's lockout list -------------------------------------------------------------


def lock_out(username: str) -> None:
    client = Client()
    for _ in range(5):
        password_step(client, username, password="wrong password")


def test_security_sees_and_clears_a_lockout(
    clock: Any, client_for: Callable[[User], Client], security: User, physician: User, events: list[dict[str, Any]]
) -> None:
    totp_device(physician)
    lock_out("physician")
    desk = client_for(security)
    page = desk.get(reverse("accounts:lockouts"))
    assert page.status_code == 200
    assert b"physician" in page.content
    assert b"Locked" in page.content
    attempt = AccessAttempt.objects.get(username="physician")
    response = desk.post(reverse("accounts:lockout_clear", args=[attempt.pk]))
    assert response["Location"] == reverse("accounts:lockouts")
    assert not AccessAttempt.objects.exists()
    cleared = next(e for e in events if e["event"] == AuthEvent.LOCKOUT_CLEARED)
    assert cleared["actor"] == security
    assert cleared["target"] == physician
    assert password_step(Client(), "physician")["Location"] == reverse("accounts:login_code")


@pytest.mark.parametrize("persona", [r for r in Role if r != Role.SECURITY], indirect=True)
def test_only_security_may_see_or_clear_lockouts(persona: User, client_for: Callable[[User], Client]) -> None:
    lock_out("someone")
    client = client_for(persona)
    assert client.get(reverse("accounts:lockouts")).status_code == 403
    attempt = AccessAttempt.objects.get(username=username_for_records("someone"))
    assert client.post(reverse("accounts:lockout_clear", args=[attempt.pk])).status_code == 403
    assert AccessAttempt.objects.filter(pk=attempt.pk).exists()


def test_clearing_needs_post(client_for: Callable[[User], Client], security: User) -> None:
    lock_out("someone")
    attempt = AccessAttempt.objects.get(username=username_for_records("someone"))
    assert client_for(security).get(reverse("accounts:lockout_clear", args=[attempt.pk])).status_code == 405


# --- Admin behind the same sign-in ----------------------------------------------------------------


def test_admin_sign_in_is_the_normal_two_step_sign_in(client: Client, compliance: User) -> None:
    response = client.get(reverse("admin:index"))
    assert response["Location"].startswith(reverse("admin:login"))
    response = client.get(response["Location"])
    assert response["Location"].startswith(reverse("accounts:login") + "?next=")


def test_compliance_officer_reaches_the_admin_after_full_sign_in(client: Client, compliance: User, clock: Any) -> None:
    device = totp_device(compliance)
    password_step(client, "compliance", next_url="/admin/")
    assert code_step(client, current_code(device))["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


# --- Role changes ---------------------------------------------------------------------------------


def test_role_change_records_who_granted_what(
    rf: Any, operator: User, nurse: User, events: list[dict[str, Any]]
) -> None:
    ward = Department.objects.create(code="icu", name="Intensive Care", kind=Department.Kind.WARD)
    user_role_change(actor=operator, user=nurse, role=Role.PHYSICIAN, department=ward, request=rf.get("/"))
    nurse.refresh_from_db()
    assert nurse.role == Role.PHYSICIAN
    (event,) = events
    assert event["event"] == AuthEvent.ROLE_CHANGED
    assert event["actor"] == operator
    assert event["target"] == nurse
    assert event["detail"]["before"]["role"] == "nurse"
    assert event["detail"]["after"] == {"role": "physician", "department": ward.pk}


def test_role_change_in_the_admin_is_recorded(
    client_for: Callable[[User], Client], operator: User, nurse: User, events: list[dict[str, Any]]
) -> None:
    client = client_for(operator)
    url = reverse("admin:accounts_user_change", args=[nurse.pk])
    form = client.get(url).context["adminform"].form
    data = {
        k: v
        for k, v in form.initial.items()
        if v is not None and k not in ("password", "groups", "user_permissions", "last_login", "date_joined")
    }
    data.update({"role": "lab", "date_joined_0": "2026-01-01", "date_joined_1": "08:00:00"})
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    nurse.refresh_from_db()
    assert nurse.role == "lab"
    changed = [e for e in events if e["event"] == AuthEvent.ROLE_CHANGED]
    assert len(changed) == 1
    assert changed[0]["actor"] == operator


def test_operator_can_reset_a_lost_authenticator(
    client_for: Callable[[User], Client], operator: User, nurse: User, events: list[dict[str, Any]]
) -> None:
    totp_device(nurse)
    client = client_for(operator)
    response = client.post(
        reverse("admin:accounts_user_changelist"), {"action": "reset_second_factor", "_selected_action": [nurse.pk]}
    )
    assert response.status_code == 302
    from accounts.models import TOTPDevice

    assert not TOTPDevice.objects.filter(user=nurse).exists()
    reset = [e for e in events if e["event"] == AuthEvent.OTP_RESET]
    assert [(e["actor"], e["target"]) for e in reset] == [(operator, nurse)]
    # At the next sign-in the nurse is walked through enrolment again.
    assert password_step(Client(), "nurse")["Location"] == reverse("accounts:enrol")
