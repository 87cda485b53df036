"""The front desk finds a patient in a real browser: by MRN from the dashboard, by surname and birth
date on the search page, by surname alone (accents ignored) paging through the results, then opens the
registration. No URL the browser asks for carries any of it."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
import time_machine

from accounts.models import TOTPDevice
from tests.accounts.helpers import current_code
from tests.e2e.test_sign_in_journey import sign_in_with_password
from tests.factories import PatientFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

START = datetime.datetime(2026, 11, 21, 9, 30, 5, tzinfo=datetime.UTC)


def test_front_desk_search_keeps_identifiers_out_of_every_url(page: Any, live_server: Any, screenshots: Path) -> None:
    base = live_server.url
    user = UserFactory(username="desk_e2e", role="front_desk", first_name="Dee", last_name="Okoro")
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    with time_machine.travel(START, tick=True):
        patient = PatientFactory(
            family_name="Searchwell", given_name="Sid", mrn="E2E-7777", birth_date=datetime.date(1961, 4, 9)
        )
        sign_in_with_password(page, base, "desk_e2e")
        page.wait_for_url(f"{base}/accounts/login/code/")
        page.get_by_label("One-time code").fill(current_code(device))
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{base}/")

        # By MRN, from the dashboard's panel: the answer is the search page, at its plain address.
        page.get_by_label("MRN").fill(patient.mrn)
        page.get_by_role("button", name="Search").click()
        page.wait_for_url(f"{base}/patients/search/")
        assert page.get_by_role("cell", name="SEARCHWELL, Sid").is_visible()

        # By surname and birth date, on the search page (the MRN field keeps the last search's value).
        page.get_by_label("MRN").fill("")
        page.get_by_label("Surname").fill("searchwell")
        page.get_by_label("Birth date").fill("1961-04-09")
        page.get_by_role("button", name="Search").click()
        page.wait_for_url(f"{base}/patients/search/")
        assert page.get_by_role("cell", name="SEARCHWELL, Sid").is_visible()
        page.screenshot(path=str(screenshots / "search-results.png"), full_page=True)

        # By surname alone, typed with an accent: more than a page of namesakes, paged by a posted button.
        for n in range(25):
            PatientFactory(family_name="Searchwell", given_name=f"Namesake{n:02d}")
        page.get_by_label("Surname").fill("Séarchwell")
        page.get_by_label("Birth date").fill("")
        page.get_by_role("button", name="Search").click()
        page.wait_for_url(f"{base}/patients/search/")
        assert page.get_by_text("Page 1 of 2 (26)").is_visible()
        page.get_by_role("button", name="Next").click()
        page.wait_for_url(f"{base}/patients/search/")
        assert page.get_by_text("Page 2 of 2 (26)").is_visible()
        assert page.get_by_role("cell", name="SEARCHWELL, Sid").is_visible()
        page.screenshot(path=str(screenshots / "search-by-surname-page-2.png"), full_page=True)

        page.locator("tr", has_text="SEARCHWELL, Sid").get_by_role("link", name="Open").click()
        page.wait_for_url(f"{base}/patients/{patient.pk}/registration/")

    values = [patient.mrn, "searchwell", "sid", "1961-04-09", "1961%2d04%2d09"]
    leaked = [url for url in requested if any(value in url.lower() for value in (v.lower() for v in values))]
    assert leaked == []
    assert any(url.endswith("/patients/search/") for url in requested)
