"""The bearer helper of the API's resource views: forged, expired, revoked tokens, suspended
partners, scopes, the rate limit, and which patients a partner may see (404 otherwise)."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import RequestFactory
from django.utils import timezone

from accounts.models import Department
from accounts.signals import AuthEvent
from audit.models import AuthEventRecord
from exchange.api.auth import ApiRefused, partner_api, patient_for_partner, rate_limit
from exchange.partners.models import AccessToken, DataSharing, Partner
from exchange.partners.selectors import partner_may_see_patient, shared_patient_ids, sharing_purpose
from exchange.partners.services import partner_status_change, token_revoke
from records.models import Encounter
from records.services import encounter_admit
from tests.factories import DepartmentFactory, PatientFactory

pytestmark = pytest.mark.django_db


@partner_api("Patient")
def patient_view(request: HttpRequest, patient_id: str) -> HttpResponse:
    auth = request.partner_auth  # type: ignore[attr-defined]
    return JsonResponse({"partner": auth.partner.client_id, "patient": patient_for_partner(auth, patient_id)})


@partner_api("Observation")
def observation_view(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"ok": True})


def call(view: Callable[..., HttpResponse], token: str | None, *args: Any, header: str | None = None) -> HttpResponse:
    extra = {"HTTP_AUTHORIZATION": header if header is not None else f"Bearer {token}"} if token or header else {}
    return view(RequestFactory().get("/fhir/r4/x", **extra), *args)


@pytest.fixture(autouse=True)
def fresh_cache() -> None:
    cache.clear()


def assert_invalid_token(response: HttpResponse) -> None:
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    body = json.loads(response.content)
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "login"


def last_refusal() -> AuthEventRecord:
    return AuthEventRecord.objects.filter(event=AuthEvent.PARTNER_API_REFUSED).order_by("-pk").first()  # type: ignore[return-value]


@pytest.fixture
def shared_patient(partner: Partner) -> int:
    patient = PatientFactory()
    DataSharing.objects.create(partner=partner, patient=patient, purpose=DataSharing.Purpose.TREATMENT)
    return int(patient.pk)


def test_valid_token_reaches_the_view_with_its_partner(issue: Callable[..., str], shared_patient: int) -> None:
    response = call(patient_view, issue(), str(shared_patient))
    assert response.status_code == 200
    assert json.loads(response.content) == {"partner": "northside", "patient": shared_patient}


def test_missing_or_malformed_header_is_401(partner: Partner) -> None:
    response = call(patient_view, None, "1")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert call(patient_view, None, "1", header="Basic abc").status_code == 401
    assert call(patient_view, None, "1", header="Bearer " + "x" * 500).status_code == 401


def test_forged_token_is_refused(issue: Callable[..., str], shared_patient: int) -> None:
    real = issue()
    assert_invalid_token(call(patient_view, real[:-1] + ("A" if real[-1] != "A" else "B"), str(shared_patient)))
    # The hash itself, as stored, is not a token either.
    stored = AccessToken.objects.get().token_hash
    assert_invalid_token(call(patient_view, stored, str(shared_patient)))
    event = last_refusal()
    assert event.detail == {"error": "401", "reason": "unknown_token"}
    assert real not in json.dumps(event.detail)


def test_expired_token_is_refused(issue: Callable[..., str], shared_patient: int, time_machine: Any) -> None:
    token = issue()
    time_machine.move_to(timezone.now() + datetime.timedelta(seconds=301))
    assert_invalid_token(call(patient_view, token, str(shared_patient)))
    assert last_refusal().detail["reason"] == "expired_token"


def test_revoked_token_is_refused(issue: Callable[..., str], shared_patient: int, compliance: Any) -> None:
    token = issue()
    assert token_revoke(actor=compliance, tokens=AccessToken.objects.all(), request=None) == 1
    assert_invalid_token(call(patient_view, token, str(shared_patient)))
    assert last_refusal().detail["reason"] == "revoked_token"
    revoked = AuthEventRecord.objects.get(event=AuthEvent.PARTNER_TOKEN_REVOKED)
    assert revoked.actor_id == compliance.pk
    assert revoked.detail["token"] == AccessToken.objects.get().hash_prefix


def test_suspended_partner_is_refused_and_its_tokens_revoked(
    issue: Callable[..., str], shared_patient: int, partner: Partner, compliance: Any
) -> None:
    token = issue()
    assert partner_status_change(actor=compliance, partner=partner, status=Partner.Status.SUSPENDED, request=None)
    assert AccessToken.objects.get().revoked_at is not None
    assert_invalid_token(call(patient_view, token, str(shared_patient)))
    assert AuthEventRecord.objects.filter(event=AuthEvent.PARTNER_SUSPENDED, actor_id=compliance.pk).count() == 1
    assert not partner_status_change(actor=compliance, partner=partner, status=Partner.Status.SUSPENDED, request=None)


def test_suspended_partner_with_a_live_token_row_is_refused(
    issue: Callable[..., str], shared_patient: int, partner: Partner
) -> None:
    # Suspended behind the services' back (e.g. in the shell): the token row is still live.
    token = issue()
    Partner.objects.filter(pk=partner.pk).update(status=Partner.Status.SUSPENDED)
    assert_invalid_token(call(patient_view, token, str(shared_patient)))
    assert last_refusal().detail["reason"] == "partner_suspended"


def test_scope_not_granted_is_403(issue: Callable[..., str]) -> None:
    response = call(observation_view, issue(scope="system/Patient.rs"))
    assert response.status_code == 403
    assert json.loads(response.content)["issue"][0]["code"] == "forbidden"
    assert call(observation_view, issue(scope="system/Observation.rs")).status_code == 200


def test_rate_limit_gives_429_with_retry_after(issue: Callable[..., str], shared_patient: int) -> None:
    token = issue()
    statuses = [call(patient_view, token, str(shared_patient)).status_code for _ in range(5)]
    assert statuses == [200] * 5
    response = call(patient_view, token, str(shared_patient))
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60
    assert last_refusal().detail["reason"] == "rate_limited"


def test_rate_limit_window_is_per_minute_and_per_partner(partner: Partner) -> None:
    other = Partner.objects.create(
        name="Other", client_id="other", allowed_scopes=[], rate_limit_per_minute=1, jwks=partner.jwks
    )
    for _ in range(5):
        rate_limit(partner, now=120.0)
    with pytest.raises(ApiRefused) as refused:
        rate_limit(partner, now=130.0)
    assert refused.value.headers["Retry_After"] == "50"
    rate_limit(other, now=130.0)
    rate_limit(partner, now=180.0)  # the next minute


def test_patient_not_shared_is_404_like_a_missing_one(issue: Callable[..., str], shared_patient: int) -> None:
    token = issue()
    unshared = PatientFactory()
    for patient_id in (str(unshared.pk), "999999", "abc", "-1"):
        response = call(patient_view, token, patient_id)
        assert response.status_code == 404
        assert json.loads(response.content)["issue"][0] == {
            "severity": "error",
            "code": "not-found",
            "diagnostics": "Not found.",
        }


def test_sharing_through_a_department_and_its_period(partner: Partner) -> None:
    ward = DepartmentFactory(code="ward-x", kind=Department.Kind.WARD)
    admitted = PatientFactory()
    encounter_admit(
        actor=None,
        patient_id=admitted.pk,
        kind=Encounter.Kind.AMBULATORY,
        department=ward,
        attending=None,
        reason="Check-up",
        starts_at=timezone.now() - datetime.timedelta(days=2),
    )
    elsewhere = PatientFactory()
    assert not partner_may_see_patient(partner, admitted.pk)
    sharing = DataSharing.objects.create(partner=partner, department=ward, purpose=DataSharing.Purpose.PUBLIC_HEALTH)
    assert partner_may_see_patient(partner, admitted.pk)
    assert not partner_may_see_patient(partner, elsewhere.pk)
    assert list(shared_patient_ids(partner)) == [admitted.pk]
    assert sharing_purpose(partner, admitted.pk) == "public_health"
    assert sharing_purpose(partner, elsewhere.pk) == ""
    # Ended sharings and sharings not yet in force share nothing.
    sharing.active_from = timezone.now() - datetime.timedelta(days=10)
    sharing.active_until = timezone.now() - datetime.timedelta(days=1)
    sharing.save()
    assert not partner_may_see_patient(partner, admitted.pk)
    sharing.active_from = timezone.now() + datetime.timedelta(days=1)
    sharing.active_until = None
    sharing.save()
    assert not partner_may_see_patient(partner, admitted.pk)


def test_suspended_partner_sees_no_patient(partner: Partner, shared_patient: int) -> None:
    assert partner_may_see_patient(partner, shared_patient)
    assert sharing_purpose(partner, shared_patient) == "treatment"
    partner.status = Partner.Status.SUSPENDED
    assert not partner_may_see_patient(partner, shared_patient)
    assert list(shared_patient_ids(partner)) == []


def test_partner_api_refuses_an_unknown_resource_type() -> None:
    with pytest.raises(ValueError, match="unknown resource type"):
        partner_api("Bundle")
