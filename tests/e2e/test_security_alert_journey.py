"""A security analyst's journey in a real browser: sign in, find an alert in the queue, open it, close it
with a resolution; then the reports page draws its charts under the strict CSP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from accounts.models import TOTPDevice
from audit.models import AccessEvent, Alert, AlertSubject, ChangeEvent
from audit.services import access_event_record
from tests.accounts.helpers import current_code
from tests.factories import TEST_PASSWORD, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_security_user_closes_an_alert_with_a_resolution(page: Any, live_server: Any, screenshots: Path) -> None:
    base = live_server.url
    analyst = UserFactory(username="sec_e2e", role="security", first_name="Erik", last_name="Vos")
    device = TOTPDevice.objects.create(user=analyst, name="phone", confirmed=True)
    nurse = UserFactory(username="nurse_e2e", role="nurse")
    (event,) = access_event_record(actor=nurse, patient_ids=[4711], categories=["notes"], action="view")
    alert = Alert(
        rule="unexplained_view",
        severity=Alert.Severity.HIGH,
        reason="Opened the record of a patient with no care relationship.",
        actor_id=nurse.pk,
        actor_username=nurse.username,
        actor_role="nurse",
        patient_id=4711,
        occurred_at=event.at,
    )
    alert.save()
    AlertSubject.objects.create(alert=alert, rule=alert.rule, kind="access", object_id=event.pk)
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)

    page.goto(f"{base}/security/alerts/")
    page.get_by_label("Username").fill("sec_e2e")
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{base}/accounts/login/code/")
    page.get_by_label("One-time code").fill(current_code(device))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/security/alerts/")

    assert page.get_by_role("heading", name="Alert queue").is_visible()
    row = page.locator("table.alert-queue tbody tr", has_text="unexplained_view")
    assert row.get_by_text("Patient #4711").is_visible()
    page.screenshot(path=str(screenshots / "security-alert-queue.png"), full_page=True)

    row.get_by_role("link", name=f"Alert {alert.pk}").click()
    page.wait_for_url(f"{base}/security/alerts/{alert.pk}/")
    assert page.get_by_role("heading", name=f"Alert {alert.pk}: unexplained_view").is_visible()
    assert page.get_by_text("none (unexplained)").first.is_visible()
    page.screenshot(path=str(screenshots / "security-alert-detail.png"), full_page=True)

    page.get_by_label("Violation (no legitimate reason)").check()
    page.get_by_label("What you found").fill("No work reason; referred to the privacy office.")
    page.get_by_role("button", name="Close the alert").click()
    page.wait_for_url(f"{base}/security/alerts/{alert.pk}/")
    assert page.get_by_test_id("alert-status").inner_text() == "Closed: violation"
    assert "privacy office" in page.get_by_test_id("alert-resolution").inner_text()
    page.screenshot(path=str(screenshots / "security-alert-closed.png"), full_page=True)

    alert.refresh_from_db()
    assert alert.status == Alert.Status.CLOSED_VIOLATION
    (change,) = ChangeEvent.objects.filter(category="alert", object_id=alert.pk)
    assert (change.actor_id, change.action) == (analyst.pk, "close_violation")
    assert AccessEvent.objects.filter(actor_id=analyst.pk, category="security_alert", action="review").exists()

    # The dashboard counts what is left open (nothing now) and links the queue.
    page.goto(f"{base}/")
    assert page.get_by_role("heading", name="Open alerts").is_visible()
    assert page.get_by_role("link", name="Work the queue").is_visible()
    page.screenshot(path=str(screenshots / "security-dashboard.png"), full_page=True)

    # The reports draw their charts with the vendored library, and nothing trips the CSP.
    page.goto(f"{base}/security/reports/")
    page.wait_for_selector("canvas[data-chart='alerts-per-rule'][data-drawn='true']")
    assert page.locator("canvas[data-drawn='true']").count() == 6
    page.screenshot(path=str(screenshots / "security-reports.png"), full_page=True)
    assert not [text for text in problems if "Content Security Policy" in text or "Refused" in text], problems
