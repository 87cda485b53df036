"""Two-step sign-in, enrolment, recovery codes, lockout and the attacks the issue lists."""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.db import connection
from django.test import Client
from django.urls import reverse

from accounts.models import RecoveryCode, TOTPDevice, User
from accounts.signals import AuthEvent
from tests.accounts.helpers import code_from_secret, code_step, current_code, is_signed_in, password_step
from tests.conftest import totp_device
from tests.factories import TEST_PASSWORD

pytestmark = pytest.mark.django_db


def kinds(events: list[dict[str, Any]]) -> list[AuthEvent]:
    return [e["event"] for e in events]


@pytest.fixture
def enrolled(physician: User) -> TOTPDevice:
    return totp_device(physician)


# --- The two steps --------------------------------------------------------------------------------


def test_password_alone_signs_nobody_in(client: Client, enrolled: TOTPDevice, clock: Any) -> None:
    response = password_step(client, "physician")
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:login_code")
    assert not is_signed_in(client)
    assert client.get("/")["Location"].startswith(reverse("accounts:login"))


def test_password_then_code_signs_in_and_lands_on_the_dashboard(
    client: Client, enrolled: TOTPDevice, clock: Any, events: list[dict[str, Any]]
) -> None:
    password_step(client, "physician")
    response = code_step(client, current_code(enrolled))
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert is_signed_in(client)
    assert client.get("/").status_code == 200
    login = next(e for e in events if e["event"] == AuthEvent.LOGIN)
    assert login["actor"].username == "physician"
    assert login["ip"] == "127.0.0.1"


def test_next_survives_both_steps_when_it_is_local(client: Client, enrolled: TOTPDevice, clock: Any) -> None:
    password_step(client, "physician", next_url="/accounts/password/")
    assert code_step(client, current_code(enrolled))["Location"] == "/accounts/password/"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "javascript:alert(1)"])
def test_next_never_leaves_the_site(client: Client, enrolled: TOTPDevice, clock: Any, target: str) -> None:
    password_step(client, "physician", next_url=target)
    assert code_step(client, current_code(enrolled))["Location"] == "/"


def test_code_step_without_password_step_sends_back_to_sign_in(client: Client) -> None:
    response = client.get(reverse("accounts:login_code"))
    assert response["Location"] == reverse("accounts:login")


def test_code_step_expires_after_five_minutes(client: Client, enrolled: TOTPDevice, clock: Any) -> None:
    password_step(client, "physician")
    clock.shift(datetime.timedelta(minutes=5, seconds=1))
    response = code_step(client, current_code(enrolled))
    assert response["Location"] == reverse("accounts:login")
    assert not is_signed_in(client)
    page = client.get(response["Location"])
    assert b"took too long" in page.content


def test_malformed_code_gets_a_clear_message(client: Client, enrolled: TOTPDevice, clock: Any) -> None:
    password_step(client, "physician")
    response = code_step(client, "12ab")
    assert response.status_code == 200
    assert b"Enter the 6 digits from your authenticator app, or a recovery code" in response.content


# --- TOTP done right ------------------------------------------------------------------------------


def test_a_used_code_is_not_accepted_twice(client: Client, enrolled: TOTPDevice, clock: Any) -> None:
    code = current_code(enrolled)
    password_step(client, "physician")
    code_step(client, code)
    client.post(reverse("accounts:logout"))
    password_step(client, "physician")
    response = code_step(client, code)
    assert response.status_code == 200
    assert b"already been used" in response.content
    assert not is_signed_in(client)


def test_a_code_for_another_user_is_refused(
    client: Client, enrolled: TOTPDevice, nurse: User, clock: Any, events: list[dict[str, Any]]
) -> None:
    nurse_code = current_code(totp_device(nurse))
    password_step(client, "physician")
    if nurse_code == current_code(enrolled):  # pragma: no cover - one chance in a million
        pytest.skip("the two random secrets gave the same code")
    response = code_step(client, nurse_code)
    assert response.status_code == 200
    assert not is_signed_in(client)
    assert AuthEvent.OTP_FAILED in kinds(events)


def test_code_from_the_previous_time_step_is_tolerated_but_not_older(
    client: Client, enrolled: TOTPDevice, clock: Any
) -> None:
    password_step(client, "physician")
    assert code_step(client, current_code(enrolled, offset_steps=-3)).status_code == 200
    clock.shift(datetime.timedelta(seconds=2))  # wait out the device's throttle after a wrong code
    assert code_step(client, current_code(enrolled, offset_steps=-1))["Location"] == "/"


def test_totp_secret_is_encrypted_at_rest(enrolled: TOTPDevice) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT key FROM accounts_totpdevice WHERE id = %s", [enrolled.pk])
        (raw,) = cursor.fetchone()
    assert raw.startswith("hc2:")
    assert enrolled.key not in raw
    assert enrolled.base32_secret not in raw


# --- Enrolment and recovery codes -----------------------------------------------------------------


def test_first_sign_in_walks_through_enrolment(
    client: Client, physician: User, clock: Any, events: list[dict[str, Any]]
) -> None:
    response = password_step(client, "physician")
    assert response["Location"] == reverse("accounts:enrol")
    page = client.get(reverse("accounts:enrol"))
    html = page.content.decode()
    assert "<svg" in html  # QR code rendered on the server
    secret = "".join(re.search(r'data-testid="totp-secret">(.*?)</p>', html, re.S).group(1).split())  # type: ignore[union-attr]
    secret = re.sub(r"<[^>]+>", "", secret)
    assert not is_signed_in(client)
    # Every page beyond enrolment stays closed until the device is confirmed.
    assert client.get("/")["Location"].startswith(reverse("accounts:login"))

    response = client.post(reverse("accounts:enrol"), {"otp_token": code_from_secret(secret)})
    assert response.status_code == 200
    codes = re.findall(r"<code>([a-z2-7]{4}-[a-z2-7]{4})</code>", response.content.decode())
    assert len(codes) == 10
    assert "no-store" in response["Cache-Control"]
    assert is_signed_in(client)
    assert TOTPDevice.objects.get(user=physician).confirmed
    # Only keyed hashes of the recovery codes are stored.
    stored = set(RecoveryCode.objects.values_list("code_hash", flat=True))
    assert not stored & set(codes)
    assert AuthEvent.OTP_ENROLLED in kinds(events)


def test_enrolment_page_needs_the_password_step(client: Client) -> None:
    assert client.get(reverse("accounts:enrol"))["Location"] == reverse("accounts:login")


def test_enrolled_user_cannot_reach_enrolment_to_replace_the_device(client: Client, enrolled: TOTPDevice) -> None:
    password_step(client, "physician")
    assert client.get(reverse("accounts:enrol"))["Location"] == reverse("accounts:login_code")


def test_wrong_enrolment_code_is_refused_and_counted(client: Client, physician: User, clock: Any) -> None:
    password_step(client, "physician")
    client.get(reverse("accounts:enrol"))
    response = client.post(reverse("accounts:enrol"), {"otp_token": "000000"})
    assert response.status_code == 200
    assert b"not right" in response.content
    assert not TOTPDevice.objects.get(user=physician).confirmed
    assert AccessAttempt.objects.get(username="physician").failures_since_start == 1


def enrol_and_get_codes(client: Client, user: User) -> list[str]:
    password_step(client, user.username)
    client.get(reverse("accounts:enrol"))
    device = TOTPDevice.objects.get(user=user)
    response = client.post(reverse("accounts:enrol"), {"otp_token": current_code(device)})
    client.post(reverse("accounts:logout"))
    return re.findall(r"<code>([a-z2-7]{4}-[a-z2-7]{4})</code>", response.content.decode())


def test_recovery_code_signs_in_once(client: Client, physician: User, clock: Any, events: list[dict[str, Any]]) -> None:
    codes = enrol_and_get_codes(client, physician)
    password_step(client, "physician")
    assert code_step(client, codes[0].upper())["Location"] == "/"
    assert AuthEvent.RECOVERY_CODE_USED in kinds(events)
    client.post(reverse("accounts:logout"))
    clock.shift(datetime.timedelta(minutes=1))
    password_step(client, "physician")
    response = code_step(client, codes[0])
    assert response.status_code == 200
    assert not is_signed_in(client)


# --- Lockout --------------------------------------------------------------------------------------


def test_wrong_codes_after_the_right_password_lock_the_account(
    client: Client, enrolled: TOTPDevice, clock: Any, events: list[dict[str, Any]]
) -> None:
    password_step(client, "physician")
    for _ in range(5):
        clock.shift(datetime.timedelta(seconds=40))  # past the device's own throttle
        response = code_step(client, "000000")
    assert response.status_code == 429
    assert b"Sign-in temporarily locked" in response.content
    assert AuthEvent.LOCKOUT in kinds(events)
    # Even the right password and code are refused now.
    response = password_step(client, "physician")
    assert response.status_code == 429
    assert not is_signed_in(client)


def test_lockout_ends_after_the_cool_off(client: Client, enrolled: TOTPDevice, clock: Any) -> None:
    for _ in range(5):
        password_step(client, "physician", password="wrong password")
    assert password_step(client, "physician").status_code == 429
    clock.shift(datetime.timedelta(minutes=15, seconds=1))
    assert password_step(client, "physician")["Location"] == reverse("accounts:login_code")
    assert code_step(client, current_code(enrolled))["Location"] == "/"


def test_lockout_is_per_username_and_address(client: Client, enrolled: TOTPDevice, clock: Any) -> None:
    for _ in range(5):
        password_step(client, "physician", password="wrong password")
    other_address = Client(REMOTE_ADDR="10.9.8.7")
    assert password_step(other_address, "physician")["Location"] == reverse("accounts:login_code")


def test_scripted_wrong_passwords_never_succeed_nor_crash(client: Client, enrolled: TOTPDevice) -> None:
    # bench/login_bruteforce.py runs the full 10,000 and compares timings; 300 keep the suite fast.
    statuses: dict[int, int] = {}
    for attempt in range(300):
        response = client.post(reverse("accounts:login"), {"username": "physician", "password": f"guess-{attempt}"})
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        if attempt == 4:
            assert response.status_code == 429  # locked from the fifth failure on
    assert statuses == {200: 4, 429: 296}
    assert not is_signed_in(client)
    assert password_step(client, "physician").status_code == 429


def test_unknown_username_is_treated_like_a_known_one(client: Client, enrolled: TOTPDevice) -> None:
    known = [password_step(client, "physician", password="x").status_code for _ in range(6)]
    other = Client()
    unknown = [password_step(other, "nobody-here", password="x").status_code for _ in range(6)]
    assert known == unknown == [200, 200, 200, 200, 429, 429]


# --- Other attacks --------------------------------------------------------------------------------


def test_post_without_csrf_token_is_refused_at_every_step(enrolled: TOTPDevice, clock: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post(reverse("accounts:login"), {"username": "physician", "password": TEST_PASSWORD})
    assert response.status_code == 403
    assert b"without a valid security token" in response.content
    response = client.post(reverse("accounts:login_code"), {"otp_token": current_code(enrolled)})
    assert response.status_code == 403
    assert not is_signed_in(client)


def test_tampered_session_cookie_is_not_signed_in(client_for: Callable[[User], Client], physician: User) -> None:
    client = client_for(physician)
    cookie = client.cookies["hc_session"]
    tampered = cookie.value[:-2] + ("zz" if not cookie.value.endswith("zz") else "yy")
    cookie.set(cookie.key, tampered, tampered)
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))


def test_session_without_a_verified_second_factor_is_ended(client: Client, physician: User) -> None:
    client.force_login(physician)  # a session made some other way than the two steps
    response = client.get("/")
    assert response["Location"].startswith(reverse("accounts:login"))
    assert not is_signed_in(client)


def test_deactivated_account_cannot_finish_signing_in(
    client: Client, enrolled: TOTPDevice, physician: User, clock: Any
) -> None:
    password_step(client, "physician")
    User.objects.filter(pk=physician.pk).update(is_active=False)
    assert code_step(client, current_code(enrolled))["Location"] == reverse("accounts:login")
    assert not is_signed_in(client)


def test_sign_out_is_recorded(
    client_for: Callable[[User], Client], physician: User, events: list[dict[str, Any]]
) -> None:
    client = client_for(physician)
    client.post(reverse("accounts:logout"))
    assert kinds(events) == [AuthEvent.LOGOUT]
    assert events[0]["target"] == physician


def test_password_failure_is_recorded_with_the_username_tried(client: Client, events: list[dict[str, Any]]) -> None:
    password_step(client, "nobody", password="x")
    assert kinds(events) == [AuthEvent.LOGIN_FAILED]
    # A username that is no account's is kept only as a keyed hash (it might be anything typed).
    assert events[0]["username"].startswith("unknown:")
    assert "nobody" not in events[0]["username"]
    assert events[0]["target"] is None
    assert "x" not in str(events[0]["detail"].values())
