"""Password spraying: many usernames from one address lock that address (accounts/lockout.py)."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.test import Client, override_settings
from django.urls import reverse

from accounts.models import User
from accounts.roles import Role
from accounts.signals import AuthEvent
from tests.accounts.helpers import password_step
from tests.conftest import totp_device

pytestmark = pytest.mark.django_db

SPRAYER = "10.6.6.6"
LIMIT = 20


def spray(count: int, address: str = SPRAYER) -> Client:
    client = Client(REMOTE_ADDR=address)
    for n in range(count):
        password_step(client, f"user{n:03d}", password="Winter2026!")
    return client


@override_settings(AXES_ADDRESS_FAILURE_LIMIT=LIMIT)
def test_thirty_usernames_from_one_address_lock_that_address(physician: User, clock: Any) -> None:
    totp_device(physician)
    sprayer = spray(30)
    # Even the right password of a real account is refused from there, and nothing is revealed.
    response = password_step(sprayer, "physician")
    assert response.status_code == 429
    assert "_auth_user_id" not in sprayer.session
    # The account itself is not locked: from another address the person signs in.
    assert password_step(Client(REMOTE_ADDR="10.1.2.3"), "physician")["Location"] == reverse("accounts:login_code")


@override_settings(AXES_ADDRESS_FAILURE_LIMIT=LIMIT)
def test_a_wards_typos_below_the_address_limit_lock_nobody_else(physician: User, clock: Any) -> None:
    totp_device(physician)
    ward = spray(LIMIT - 1)
    assert password_step(ward, "physician")["Location"] == reverse("accounts:login_code")


@override_settings(AXES_ADDRESS_FAILURE_LIMIT=LIMIT)
def test_the_address_lock_ends_after_the_cool_off(physician: User, clock: Any) -> None:
    totp_device(physician)
    sprayer = spray(LIMIT)
    assert password_step(sprayer, "physician").status_code == 429
    clock.shift(datetime.timedelta(minutes=15, seconds=1))
    assert password_step(sprayer, "physician")["Location"] == reverse("accounts:login_code")


@override_settings(AXES_ADDRESS_FAILURE_LIMIT=LIMIT)
def test_spraying_is_recorded_as_a_lockout(physician: User, clock: Any, events: list[dict[str, Any]]) -> None:
    spray(LIMIT)
    lockouts = [e for e in events if e["event"] == AuthEvent.LOCKOUT]
    assert lockouts
    assert lockouts[0]["ip"] == SPRAYER


@override_settings(AXES_ADDRESS_FAILURE_LIMIT=LIMIT)
def test_security_sees_the_locked_address_and_clears_it(
    clock: Any, client_for: Callable[[User], Client], security: User, physician: User, events: list[dict[str, Any]]
) -> None:
    totp_device(physician)
    sprayer = spray(LIMIT)
    desk = client_for(security)

    page = desk.get(reverse("accounts:lockouts")).content.decode()
    assert "Addresses locked for password spraying" in page
    assert SPRAYER in page

    response = desk.post(reverse("accounts:lockout_clear_address"), {"ip_address": SPRAYER})

    assert response["Location"] == reverse("accounts:lockouts")
    assert not AccessAttempt.objects.filter(ip_address=SPRAYER).exists()
    cleared = next(e for e in events if e["event"] == AuthEvent.LOCKOUT_CLEARED)
    assert cleared["actor"] == security
    assert cleared["detail"] == {"cleared_ip": SPRAYER, "scope": "address"}
    assert password_step(sprayer, "physician")["Location"] == reverse("accounts:login_code")


def test_clearing_an_address_refuses_what_is_not_an_address(
    client_for: Callable[[User], Client], security: User
) -> None:
    response = client_for(security).post(reverse("accounts:lockout_clear_address"), {"ip_address": "'; DROP TABLE"})
    assert response.status_code == 400
    assert b"DROP TABLE" not in response.content


@pytest.mark.parametrize("persona", [r for r in Role if r != Role.SECURITY], indirect=True)
def test_only_security_may_clear_an_address(persona: User, client_for: Callable[[User], Client]) -> None:
    spray(3)
    response = client_for(persona).post(reverse("accounts:lockout_clear_address"), {"ip_address": SPRAYER})
    assert response.status_code == 403
    assert AccessAttempt.objects.filter(ip_address=SPRAYER).count() == 3
