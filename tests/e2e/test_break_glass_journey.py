"""A paramedic breaks the glass in a real browser: sign in, find the patient, state the reason, confirm
with a fresh code, read the emergency summary and the full chart, end the access."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
import time_machine

from accounts.models import TOTPDevice
from records.models import BreakGlassGrant
from records.services import allergy_record, medication_prescribe
from tests.accounts.helpers import current_code
from tests.e2e.test_sign_in_journey import sign_in_with_password
from tests.factories import PatientFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

START = datetime.datetime(2026, 11, 21, 3, 10, 5, tzinfo=datetime.UTC)


def test_paramedic_breaks_the_glass_reads_summary_and_chart(page: Any, live_server: Any, screenshots: Path) -> None:
    base = live_server.url
    user = UserFactory(username="medic_e2e", role="ems", first_name="Sam", last_name="Reyes")
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    with time_machine.travel(START, tick=True) as clock:
        patient = PatientFactory(family_name="Roadside", given_name="Rosa", mrn="E2E-4242")
        allergy_record(actor=None, patient_id=patient.pk, substance="Latex", reaction="Hives")
        medication_prescribe(actor=None, patient_id=patient.pk, display="Warfarin 5 mg", dosage="Once daily")

        sign_in_with_password(page, base, "medic_e2e")
        page.wait_for_url(f"{base}/accounts/login/code/")
        page.get_by_label("One-time code").fill(current_code(device))
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{base}/")
        assert page.get_by_role("heading", name="Paramedic / ER dashboard").is_visible()

        # Without a grant the chart does not exist for a paramedic.
        response = page.goto(f"{base}/patients/{patient.pk}/")
        assert response is not None
        assert response.status == 404

        page.goto(f"{base}/")
        page.get_by_role("link", name="Break the glass for a patient").click()
        page.wait_for_url(f"{base}/emergency/")
        page.get_by_label("MRN").fill("E2E-4242")
        page.get_by_role("button", name="Find").click()
        # The MRN was posted: it is in no URL.
        assert "E2E-4242" not in page.url
        page.get_by_role("link", name="Request emergency access").click()
        page.wait_for_url(f"{base}/emergency/patients/{patient.pk}/")
        assert page.get_by_text("ROADSIDE, Rosa").is_visible()

        page.get_by_label("Reason").select_option("unable_to_consent")
        page.get_by_label("Explain in a few words").fill("Unresponsive at the roadside, anticoagulation suspected")
        # The sign-in code cannot be used twice: wait for the next one, as a person would.
        clock.shift(datetime.timedelta(seconds=31))
        page.get_by_label("One-time code").fill(current_code(device))
        page.screenshot(path=str(screenshots / "break-glass-request.png"), full_page=True)
        page.get_by_role("button", name="Break the glass").click()

        page.wait_for_url(f"{base}/emergency/patients/{patient.pk}/summary/")
        assert page.get_by_role("heading", name="ROADSIDE, Rosa").is_visible()
        assert page.get_by_test_id("break-glass-banner").is_visible()
        assert page.get_by_test_id("allergy-strip").get_by_text("Latex").is_visible()  # in the banner too
        assert page.get_by_text("Warfarin 5 mg").is_visible()
        page.screenshot(path=str(screenshots / "break-glass-summary.png"), full_page=True)

        page.get_by_role("link", name="Open the full chart").click()
        page.wait_for_url(f"{base}/patients/{patient.pk}/")
        assert page.get_by_role("heading", name="ROADSIDE, Rosa").is_visible()
        assert page.get_by_test_id("break-glass-banner").is_visible()
        page.screenshot(path=str(screenshots / "break-glass-chart.png"), full_page=True)

        page.get_by_test_id("break-glass-banner").get_by_role("button", name="End emergency access").click()
        page.wait_for_url(f"{base}/emergency/")
        assert page.get_by_text("Emergency access ended.").is_visible()
        grant = BreakGlassGrant.objects.get()
        assert grant.user_id == user.pk
        assert grant.reason == "unable_to_consent"
        assert grant.ended_at is not None
        response = page.goto(f"{base}/patients/{patient.pk}/")
        assert response is not None
        assert response.status == 404
