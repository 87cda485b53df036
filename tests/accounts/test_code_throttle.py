"""django-otp's throttle after a wrong code: the person is told to wait, and the refused try is not a failure."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django.urls import reverse

from accounts.models import TOTPDevice, User
from accounts.signals import AuthEvent
from tests.accounts.helpers import code_step, current_code, is_signed_in, password_step
from tests.conftest import totp_device
from tests.factories import TEST_PASSWORD

pytestmark = pytest.mark.django_db

WRONG = "000000"


@pytest.fixture
def enrolled(physician: User) -> TOTPDevice:
    return totp_device(physician)


def _wrong(device: TOTPDevice) -> str:
    return WRONG if current_code(device) != WRONG else "111111"


def _failures() -> int:
    return sum(a.failures_since_start for a in AccessAttempt.objects.all())


def test_right_code_just_after_a_wrong_one_says_wait_and_is_not_counted(
    client: Client, enrolled: TOTPDevice, clock: Any, events: list[dict[str, Any]]
) -> None:
    password_step(client, "physician")
    code_step(client, _wrong(enrolled))
    assert _failures() == 1

    response = code_step(client, current_code(enrolled))

    assert response.status_code == 200
    assert not is_signed_in(client)
    page = response.content.decode()
    assert "wait 1 second, then enter the code" in page
    assert "not right, or it has already been used" not in page
    assert _failures() == 1
    assert [e["event"] for e in events].count(AuthEvent.OTP_FAILED) == 1


def test_after_the_wait_the_right_code_signs_in(client: Client, enrolled: TOTPDevice, clock: Any) -> None:
    password_step(client, "physician")
    code_step(client, _wrong(enrolled))
    clock.shift(datetime.timedelta(seconds=1))

    response = code_step(client, current_code(enrolled))

    assert response["Location"] == "/"
    assert is_signed_in(client)


def test_the_wait_doubles_with_each_wrong_code_and_is_shown_in_seconds(
    client: Client, enrolled: TOTPDevice, clock: Any
) -> None:
    password_step(client, "physician")
    for _ in range(3):
        code_step(client, _wrong(enrolled))
        clock.shift(datetime.timedelta(seconds=10))
    code_step(client, _wrong(enrolled))  # the fourth wrong code: 2^3 = 8 s

    response = code_step(client, current_code(enrolled))

    assert "wait 8 seconds" in response.content.decode()
    assert _failures() == 4


def test_step_up_tells_a_throttled_user_to_wait_without_counting_the_try(
    client_for: Callable[[User], Client], physician: User, clock: Any
) -> None:
    client = client_for(physician)
    device = totp_device(physician)
    url = reverse("accounts:step_up")
    client.post(url, {"otp_token": _wrong(device), "next": "/"})

    response = client.post(url, {"otp_token": current_code(device), "next": "/"})

    assert response.status_code == 200
    assert "wait 1 second" in response.content.decode()
    assert _failures() == 1
    assert client.get("/").status_code == 200  # still signed in


def test_password_change_tells_a_throttled_user_to_wait(
    client_for: Callable[[User], Client], physician: User, clock: Any
) -> None:
    client = client_for(physician)
    device = totp_device(physician)
    url = reverse("accounts:password_change")
    new = {
        "old_password": TEST_PASSWORD,
        "new_password1": "a-new long passphrase 7",
        "new_password2": "a-new long passphrase 7",
    }
    client.post(url, {**new, "otp_token": _wrong(device)})

    response = client.post(url, {**new, "otp_token": current_code(device)})

    assert "wait 1 second" in response.content.decode()
    assert _failures() == 1
    physician.refresh_from_db()
    assert physician.check_password(TEST_PASSWORD)
