"""Clinical journeys in a real browser (issue 10): a nurse on a tablet (800 px wide) finds a patient by
surname and records vitals with a flagged value; a physician prescribes a drug the patient is allergic
to, is stopped, and overrides with a reason. Screenshots of each step go to artifacts/screenshots."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import time_machine

from accounts.models import Department, TOTPDevice, User
from accounts.roles import Role
from records.models import Medication, Observation
from records.services import allergy_record
from tests.accounts.helpers import current_code
from tests.e2e.test_sign_in_journey import sign_in_with_password
from tests.factories import DepartmentFactory, PatientFactory, UserFactory, assign

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

START = datetime.datetime(2026, 11, 23, 9, 15, 5, tzinfo=datetime.UTC)
# A tablet on a ward trolley, held upright: the width the issue measured at.
TABLET = {"width": 800, "height": 1000}
# "The first screen": the vitals form must be reachable without scrolling.
FIRST_SCREEN = 1000


@pytest.fixture
def tablet(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=TABLET)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def find_patient_by_surname(page: Any, surname: str, *, screenshot: Path | None = None) -> int:
    """Find a patient by surname alone and open their chart, as a clinician does from any page.

    The search is posted (nothing typed lands in the URL); the row the user may open has an Open
    link, the others say why not. Returns how many found rows the user may not open.
    """
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Find a patient").click()
    page.get_by_label("Surname").fill(surname)
    page.get_by_role("button", name="Search").click()
    page.wait_for_selector("section.results")
    if screenshot is not None:
        page.screenshot(path=str(screenshot))
    assert surname.lower() not in page.url.lower()
    refused = int(page.get_by_role("row").filter(has_text="No care relationship").count())
    page.get_by_role("row").filter(has=page.get_by_role("link", name="Open")).get_by_role("link", name="Open").click()
    return refused


def _sign_in(page: Any, base: str, user: User) -> None:
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    sign_in_with_password(page, base, user.username)
    page.wait_for_url(f"{base}/accounts/login/code/")
    page.get_by_label("One-time code").fill(current_code(device))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/")


def test_nurse_on_a_tablet_records_vitals_and_sees_the_flag(tablet: Any, live_server: Any, screenshots: Path) -> None:
    page, base = tablet, live_server.url
    ward = DepartmentFactory(code="e2e-ward", name="Ward 7", kind=Department.Kind.WARD)
    nurse = UserFactory(username="nurse_e2e", role=Role.NURSE, department=ward, first_name="Nia", last_name="Osei")
    with time_machine.travel(START, tick=True):
        patient = PatientFactory(family_name="Vitalson", given_name="Vera", birth_date=datetime.date(1950, 2, 14))
        # A namesake on another ward: found too, but not hers to open.
        PatientFactory(family_name="Vitalsón", given_name="Viktor", birth_date=datetime.date(1971, 9, 3))
        assign(nurse, patient, "primary_nurse")
        _sign_in(page, base, nurse)

        namesakes = find_patient_by_surname(
            page, "vitalson", screenshot=screenshots / "nurse-tablet-surname-search.png"
        )
        assert namesakes == 1  # the other Vitalsón is listed, without an Open link
        page.wait_for_url(f"{base}/patients/{patient.pk}/")
        assert page.get_by_role("heading", name="VITALSON, Vera").is_visible()
        page.screenshot(path=str(screenshots / "nurse-tablet-chart-first-screen.png"))

        # The first screen: the banner, the section nav and the vitals form, without scrolling.
        nav = page.get_by_test_id("chart-nav")
        assert nav.get_by_role("link", name="Observations").is_visible()
        assert nav.get_by_role("link", name="Record vitals").is_visible()
        save = page.get_by_role("button", name="Save vitals")
        box = save.bounding_box()
        assert box is not None
        assert box["y"] + box["height"] <= FIRST_SCREEN, box
        assert page.evaluate("window.scrollY") == 0

        page.get_by_label("Heart rate (/min)").fill("150")
        page.get_by_label("SpO₂ (%)").fill("97")
        page.get_by_label("Systolic BP (mm Hg)").fill("128")
        page.get_by_label("Diastolic BP (mm Hg)").fill("82")
        save.click()
        page.wait_for_url(f"{base}/patients/{patient.pk}/")
        assert page.get_by_text("Vitals recorded.").is_visible()

        # One row for the recording, the heart rate marked high in words.
        table = page.get_by_test_id("vitals-table")
        assert table.get_by_role("row").count() == 2  # header + one recording
        flag = table.get_by_test_id("result-flag")
        assert flag.count() == 1
        assert flag.inner_text() == "H high"
        assert table.get_by_role("cell").filter(has_text="150").count() == 1
        # The trend line is drawn from the page's own data (no other request reads the record).
        page.wait_for_selector("canvas[data-vital='8867-4'][data-drawn='true']")
        page.screenshot(path=str(screenshots / "nurse-tablet-vitals-flagged.png"))

        # The section nav stays at hand further down the page.
        nav.get_by_role("link", name="Notes").click()
        assert page.url.endswith("#section-notes")
        assert nav.is_visible()
        page.screenshot(path=str(screenshots / "nurse-tablet-notes-section.png"))

    flags = sorted(o.interpretation for o in Observation.objects.filter(patient=patient))
    assert flags == ["H", "N", "N", "N"]


def test_physician_prescription_blocked_by_an_allergy_then_overridden_with_a_reason(
    page: Any, live_server: Any, screenshots: Path
) -> None:
    base = live_server.url
    physician = UserFactory(username="dr_allergy_e2e", role=Role.PHYSICIAN, first_name="Ade", last_name="Bello")
    reason = "Tolerated amoxicillin in 2024 under observation"
    with time_machine.travel(START, tick=True):
        patient = PatientFactory(family_name="Allergic", given_name="Alma")
        assign(physician, patient)
        allergy_record(
            actor=None,
            patient_id=patient.pk,
            code="class:penicillins",
            substance="",
            reaction="Rash",
            severity="moderate",
        )
        _sign_in(page, base, physician)
        page.goto(f"{base}/patients/{patient.pk}/")
        assert page.get_by_test_id("allergy-strip").is_visible()

        page.get_by_test_id("chart-nav").get_by_role("link", name="Medications").click()
        page.locator("#prescribe summary").click()
        page.get_by_label("Medication (RxNorm)").select_option(label="Amoxicillin")
        page.get_by_label("Dosage").fill("500 mg three times daily")
        page.screenshot(path=str(screenshots / "physician-prescribe-amoxicillin.png"), full_page=True)
        page.locator("#prescribe").get_by_role("button", name="Prescribe").click()

        # Stopped: the warning names the allergy, the form comes back with the banner, nothing is saved.
        warning = page.get_by_test_id("allergy-warning")
        assert warning.is_visible()
        assert "penicillins" in warning.inner_text().lower()
        assert page.get_by_role("heading", name="ALLERGIC, Alma").is_visible()
        assert page.get_by_text("This medication conflicts with a recorded allergy.").is_visible()
        assert not Medication.objects.filter(patient=patient).exists()
        page.screenshot(path=str(screenshots / "physician-allergy-warning.png"), full_page=True)

        page.get_by_label("Prescribe despite the allergy").check()
        page.get_by_label("Reason for prescribing despite the allergy").fill(reason)
        page.get_by_role("button", name="Save").click()
        page.wait_for_url(f"{base}/patients/{patient.pk}/")
        assert page.get_by_text("Prescription saved.").is_visible()
        medications = page.locator("#section-medications")
        assert medications.get_by_role("cell").filter(has_text="Amoxicillin").is_visible()
        assert medications.get_by_test_id("allergy-override").is_visible()
        assert medications.get_by_text(reason).is_visible()
        medications.scroll_into_view_if_needed()
        page.screenshot(path=str(screenshots / "physician-override-in-chart.png"), full_page=True)

    medication = Medication.objects.get(patient=patient)
    assert medication.allergy_override_reason == reason
