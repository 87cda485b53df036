"""Compliance reads alerts and break-the-glass grants in the admin: read-only, filtered, exported, audited."""

from __future__ import annotations

import csv
import datetime
import io
from collections.abc import Callable

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from audit.models import AccessEvent, Alert
from records.models import BreakGlassGrant
from tests.audit.alert_helpers import make_alert
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_filter_choices() -> None:
    cache.clear()


@pytest.fixture
def officer(compliance: User, client_for: Callable[[User], Client]) -> Client:
    return client_for(compliance)


@pytest.fixture
def grant(ems: User) -> BreakGlassGrant:
    now = timezone.now()
    grant = BreakGlassGrant(
        user=ems,
        patient=PatientFactory(),
        reason=BreakGlassGrant.Reason.UNABLE_TO_CONSENT,
        explanation="Found unresponsive, query overdose",
        granted_at=now - datetime.timedelta(hours=3),
        expires_at=now - datetime.timedelta(hours=2),
    )
    grant.save()
    return grant


def test_alert_list_filters_and_hides_the_notes(officer: Client, nurse: User) -> None:
    alert = make_alert(rule="same_surname", severity=Alert.Severity.HIGH, actor=nurse, subjects=[("access", 12)])
    alert.notes = "Spoke to her manager"
    alert.resolution = "pending"
    alert.save()
    make_alert(rule="after_hours")
    url = reverse("admin:audit_alert_changelist")
    response = officer.get(url)
    assert response.status_code == 200
    body = response.content.decode()
    assert "same_surname" in body
    assert "Spoke to her manager" not in body
    response = officer.get(url, {"rule": "same_surname", "severity": "3", "status": "open"})
    assert [a.pk for a in response.context["cl"].queryset] == [alert.pk]
    assert officer.get(url, {"severity": "9"}).status_code in (200, 302)
    assert AccessEvent.objects.filter(category="audit_trail", detail__model="alert").exists()


def test_alert_detail_shows_notes_and_subjects_read_only(officer: Client, nurse: User) -> None:
    alert = make_alert(actor=nurse, subjects=[("access", 12), ("grant", 3)])
    alert.notes = "Spoke to her manager"
    alert.save()
    response = officer.get(reverse("admin:audit_alert_change", args=[alert.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    assert "Spoke to her manager" in body
    assert "Access event" in body
    assert 'name="_save"' not in body
    response = officer.post(reverse("admin:audit_alert_change", args=[alert.pk]), {"status": "closed_violation"})
    assert response.status_code == 403
    assert Alert.objects.get(pk=alert.pk).status == Alert.Status.OPEN
    assert officer.get(reverse("admin:audit_alert_add")).status_code == 403
    assert officer.post(reverse("admin:audit_alert_delete", args=[alert.pk]), {"post": "yes"}).status_code == 403


def test_alert_export_has_no_notes_and_guards_formulas(officer: Client) -> None:
    alert = make_alert(reason="@SUM(1+1)")
    alert.notes = "never exported"
    alert.save()
    response = officer.get(reverse("admin:audit_alert_export"))
    assert response.status_code == 200
    body = b"".join(response.streaming_content).decode()
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0][:3] == ["id", "created_at", "occurred_at"]
    assert rows[1][6] == "'@SUM(1+1)"
    assert "never exported" not in body


def test_grant_list_hides_the_explanation_detail_shows_it(officer: Client, grant: BreakGlassGrant) -> None:
    url = reverse("admin:records_breakglassgrant_changelist")
    response = officer.get(url)
    assert response.status_code == 200
    body = response.content.decode()
    assert f"Patient #{grant.patient_id}" in body
    assert "overdose" not in body
    response = officer.get(url, {"reason": "unable_to_consent", "user_id": str(grant.user_id)})
    assert [g.pk for g in response.context["cl"].queryset] == [grant.pk]
    detail = officer.get(reverse("admin:records_breakglassgrant_change", args=[grant.pk]))
    assert "overdose" in detail.content.decode()
    export = officer.get(reverse("admin:records_breakglassgrant_export"))
    text = b"".join(export.streaming_content).decode()
    assert "overdose" not in text
    assert str(grant.patient_id) in text
    assert officer.get(reverse("admin:records_breakglassgrant_add")).status_code == 403


@pytest.mark.parametrize("persona_name", ["security", "physician", "ems"])
def test_other_roles_cannot_read_them_in_the_admin(
    persona_name: str, request: pytest.FixtureRequest, client_for: Callable[[User], Client], grant: BreakGlassGrant
) -> None:
    client = client_for(request.getfixturevalue(persona_name))
    alert = make_alert()
    for url in (
        reverse("admin:audit_alert_changelist"),
        reverse("admin:audit_alert_change", args=[alert.pk]),
        reverse("admin:records_breakglassgrant_changelist"),
        reverse("admin:records_breakglassgrant_change", args=[grant.pk]),
    ):
        response = client.get(url)
        assert response.status_code in (302, 403, 404), url
        if response.status_code == 302:
            assert not response["Location"].startswith("/admin/audit/")
            assert not response["Location"].startswith("/admin/records/")
