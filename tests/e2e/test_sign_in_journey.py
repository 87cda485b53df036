"""A person's sign-in journey in a real browser: password + code, chart, step-up, idle time-out, enrolment."""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Any

import pytest
import time_machine

from accounts.models import TOTPDevice
from tests.accounts.helpers import code_from_secret, current_code
from tests.factories import TEST_PASSWORD, PatientFactory, UserFactory, assign

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

START = datetime.datetime(2026, 11, 21, 8, 0, 5, tzinfo=datetime.UTC)


def sign_in_with_password(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/")
    assert page.url.startswith(f"{base}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Continue").click()


def test_sign_in_chart_step_up_and_idle_time_out(page: Any, live_server: Any, screenshots: Path) -> None:
    base = live_server.url
    user = UserFactory(username="dr_e2e", role="physician", first_name="Ada", last_name="Okafor")
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    with time_machine.travel(START, tick=True) as clock:
        patient = PatientFactory(family_name="Journeyman", given_name="Jo")
        assign(user, patient)
        chart = f"{base}/patients/{patient.pk}/"
        page.goto(f"{base}/accounts/login/")
        page.screenshot(path=str(screenshots / "sign-in.png"), full_page=True)

        sign_in_with_password(page, base, "dr_e2e")
        page.wait_for_url(f"{base}/accounts/login/code/")
        page.get_by_label("One-time code").fill(current_code(device))
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{base}/")
        assert page.get_by_role("heading", name="Physician dashboard").is_visible()

        # A chart right after sign-in opens without another code.
        page.goto(chart)
        assert page.get_by_role("heading", name="JOURNEYMAN, Jo").is_visible()
        page.screenshot(path=str(screenshots / "chart.png"), full_page=True)

        # Eleven minutes later (activity in between keeps the session alive) a fresh code is asked for.
        clock.shift(datetime.timedelta(minutes=6))
        page.goto(f"{base}/")
        clock.shift(datetime.timedelta(minutes=5))
        page.goto(chart)
        assert "/accounts/verify/" in page.url
        assert page.get_by_role("heading", name="Confirm it is you").is_visible()
        page.screenshot(path=str(screenshots / "step-up.png"), full_page=True)
        page.get_by_label("One-time code").fill(current_code(device))
        page.get_by_role("button", name="Continue").click()
        page.wait_for_url(chart)
        assert page.get_by_role("heading", name="JOURNEYMAN, Jo").is_visible()

        # Sixteen idle minutes later the session is over.
        clock.shift(datetime.timedelta(minutes=16))
        page.goto(f"{base}/")
        assert page.url.startswith(f"{base}/accounts/login/")
        assert page.get_by_text(re.compile("signed out after 15 minutes without activity")).is_visible()


def test_first_sign_in_enrols_an_authenticator(page: Any, live_server: Any, screenshots: Path) -> None:
    base = live_server.url
    UserFactory(username="new_nurse", role="nurse")
    sign_in_with_password(page, base, "new_nurse")
    page.wait_for_url(f"{base}/accounts/login/enrol/")
    assert page.locator(".qr svg").is_visible()
    page.screenshot(path=str(screenshots / "enrolment.png"), full_page=True)
    secret = "".join(page.get_by_test_id("totp-secret").inner_text().split())
    page.get_by_label("One-time code").fill(code_from_secret(secret))
    page.get_by_role("button", name="Confirm and sign in").click()
    codes = page.get_by_test_id("recovery-codes").locator("code").all_inner_texts()
    assert len(codes) == 10
    page.screenshot(path=str(screenshots / "recovery-codes.png"), full_page=True)
    page.get_by_role("link", name="I have saved my codes, continue").click()
    page.wait_for_url(f"{base}/")
    assert page.get_by_role("heading", name="Nurse dashboard").is_visible()
