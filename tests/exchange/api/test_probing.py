"""The partner API under probing: malformed assertions and requests get the API's own refusals (never
a 500, never the site's HTML), an MRN not shared looks and times like an unknown one, forged tokens are
slowed down by address, and compliance's changes to a partner reach its live tokens at once."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from joserfc.jwk import RSAKey

from accounts.models import User
from audit.models import AccessEvent, AuthEventRecord
from exchange.partners.models import AccessToken, DataSharing, Partner
from exchange.partners.services import partner_keys_changed
from records.models import Patient
from tests.exchange.api.conftest import TokenCall, assertion, public_jwks
from tests.exchange.api.test_resources import BASE, MRN, get, outcome, shared, token
from tests.factories import PatientFactory, UserFactory

pytestmark = pytest.mark.django_db

__all__ = ["shared", "token"]  # fixtures used here


def _b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def refused(response: Any, error: str, status: int) -> None:
    assert response.status_code == status, response.content
    assert response.json() == {"error": error}


# --- the token endpoint ----------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS384", "HS256"])
def test_an_issuer_with_a_nul_byte_is_refused_as_an_unknown_client_not_a_500(
    alg: str, partner: Partner, request_token: TokenCall
) -> None:
    # Forged, unsigned: the issuer is read before any signature is checked, so it must not reach a
    # query as it is (PostgreSQL refuses a NUL in text with an error, which was a 500).
    header, claims = _b64({"alg": alg, "kid": "rsa-1"}), _b64({"iss": "north\x00side", "jti": "x"})
    forged = f"{header}.{claims}.AAAA"
    refused(request_token(forged), "invalid_client", 401)
    event = AuthEventRecord.objects.filter(event="partner_token_refused").latest("pk")
    assert event.detail["reason"] == "no_issuer"
    assert event.username == "partner:unknown"


@pytest.mark.parametrize("jti", ["a\x00b", "with space", "tab\there", "é"])
def test_a_signed_assertion_whose_jti_is_not_an_identifier_is_refused(
    jti: str, partner: Partner, rsa_key: RSAKey, request_token: TokenCall
) -> None:
    refused(request_token(assertion(rsa_key, jti=jti)), "invalid_client", 401)
    assert not AccessToken.objects.exists()


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": float("nan")},
        {"exp": float("inf")},
        {"exp": 10**400},
        {"iat": 10**400},
        {"nbf": float("nan")},
    ],
    ids=["exp NaN", "exp infinity", "exp 400 digits", "iat 400 digits", "nbf NaN"],
)
def test_a_signed_assertion_with_a_date_that_is_no_number_is_refused_not_a_500(
    claims: dict[str, Any], partner: Partner, rsa_key: RSAKey, request_token: TokenCall
) -> None:
    refused(request_token(assertion(rsa_key, **claims)), "invalid_client", 401)
    assert not AccessToken.objects.exists()


# --- identifier searches: no oracle ---------------------------------------------------------------


def test_an_mrn_not_shared_answers_like_an_unknown_one_in_body_and_in_queries(
    shared: Patient, token: Callable[..., str]
) -> None:
    PatientFactory(mrn="API-NOT-SHARED")
    bearer = token()
    answers = {}
    for mrn in ("API-NOT-SHARED", "API-NO-SUCH-MRN"):
        with CaptureQueriesContext(connection) as queries:
            response = get("Patient", bearer, identifier=f"urn:healthcrypt:mrn|{mrn}")
        assert response.status_code == 200
        body = response.json()
        body.pop("id")
        body["link"] = [{**link, "url": link["url"].replace(mrn, "MRN")} for link in body["link"]]
        answers[mrn] = (body, len(queries))
    assert answers["API-NOT-SHARED"] == answers["API-NO-SUCH-MRN"]
    assert answers["API-NOT-SHARED"][0]["total"] == 0
    # Each search that found nobody is recorded, so guessing MRNs leaves a trail (never the MRN).
    misses = AuthEventRecord.objects.filter(event="partner_api_refused", detail__reason="no_match")
    assert misses.count() == 2
    assert all(MRN not in json.dumps(event.detail) and "API-N" not in json.dumps(event.detail) for event in misses)
    # The shared patient is still found, and is no miss.
    found = get("Patient", bearer, identifier=f"urn:healthcrypt:mrn|{MRN}").json()
    assert found["total"] == 1
    assert misses.count() == 2


def test_a_patient_id_not_shared_costs_the_same_queries_as_an_unknown_one(
    shared: Patient, token: Callable[..., str]
) -> None:
    other = PatientFactory()
    bearer = token()
    counts = []
    for patient_id in (str(other.row_uid), "0b6f1d3e-1111-4c4c-9d9d-123456789abc"):
        with CaptureQueriesContext(connection) as queries:
            outcome(get(f"Patient/{patient_id}", bearer), 404)
        counts.append(len(queries))
    assert counts[0] == counts[1]


# --- the API's own answers, not the site's ----------------------------------------------------------


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
def test_writing_methods_get_a_405_operation_outcome_not_the_csrf_page(
    method: str, shared: Patient, token: Callable[..., str]
) -> None:
    client = Client(enforce_csrf_checks=True)
    bearer = token()
    for path in (f"Patient/{shared.row_uid}", "Patient", "Observation", "metadata"):
        response = getattr(client, method)(f"{BASE}/{path}", HTTP_AUTHORIZATION=f"Bearer {bearer}")
        assert response.status_code == 405, (path, response.content)
        assert response["Content-Type"].startswith("application/fhir+json")
        assert response["Allow"] == "GET"
        assert response.json()["issue"][0]["code"] == "not-supported"


def test_head_is_a_405_operation_outcome(shared: Patient, token: Callable[..., str]) -> None:
    response = Client().head(f"{BASE}/Patient/{shared.row_uid}", HTTP_AUTHORIZATION=f"Bearer {token()}")
    assert response.status_code == 405
    assert response["Content-Type"].startswith("application/fhir+json")


def test_a_get_of_the_post_search_is_a_405_naming_post(token: Callable[..., str]) -> None:
    response = get("Patient/_search", token())
    assert outcome(response, 405) == "This endpoint answers POST only."
    assert response["Allow"] == "POST"


@override_settings(DATA_UPLOAD_MAX_NUMBER_FIELDS=10)
def test_too_many_query_fields_is_a_400_operation_outcome(shared: Patient, token: Callable[..., str]) -> None:
    params = {f"f{i}": "x" for i in range(20)}
    response = Client().get(f"{BASE}/Observation", params, HTTP_AUTHORIZATION=f"Bearer {token()}")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/fhir+json")
    assert response.json()["resourceType"] == "OperationOutcome"


def test_the_site_keeps_its_html_error_pages_outside_the_api() -> None:
    response = Client(enforce_csrf_checks=True).post("/accounts/login/", {"username": "x"})
    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"_since": "2020-01-01"}, "This search supports only: _count, _offset."),
        ({"_count": "1001"}, "_count must be between 1 and 1000."),
        ({"_offset": "x"}, "_offset must be a whole number."),
    ],
)
def test_everything_refuses_parameters_it_does_not_take_and_quotes_none(
    params: dict[str, str], says: str, shared: Patient, token: Callable[..., str]
) -> None:
    response = get(f"Patient/{shared.row_uid}/$everything", token(), **params)
    assert outcome(response, 400) == says
    assert not AccessEvent.objects.filter(action="partner_read").exists()


# --- forged tokens, narrowed scopes, replaced keys -----------------------------------------------------


@override_settings(PARTNER_TOKEN_REQUESTS_PER_MINUTE=5)
def test_calls_with_forged_tokens_are_slowed_down_by_address(shared: Patient) -> None:
    statuses = [get(f"Patient/{shared.row_uid}", f"forged-{i}").status_code for i in range(8)]
    assert statuses[:5] == [401] * 5
    assert statuses[5:] == [429] * 3
    limited = get(f"Patient/{shared.row_uid}", "forged-again")
    assert outcome(limited, 429) == "Too many requests."
    assert int(limited["Retry-After"]) >= 1
    reasons = list(AuthEventRecord.objects.filter(event="partner_api_refused").values_list("detail__reason", flat=True))
    assert reasons.count("unknown_token") == 5
    assert reasons.count("rate_limited") == 4


def test_narrowing_a_partners_scopes_applies_to_its_live_tokens(
    shared: Patient, partner: Partner, token: Callable[..., str]
) -> None:
    bearer = token()
    assert get("Observation", bearer, patient=f"Patient/{shared.row_uid}").status_code == 200
    partner.allowed_scopes = ["system/Patient.rs"]
    partner.save()
    outcome(get("Observation", bearer, patient=f"Patient/{shared.row_uid}"), 403)
    everything = get(f"Patient/{shared.row_uid}/$everything", bearer).json()
    assert {entry["resource"]["resourceType"] for entry in everything["entry"]} == {"Patient"}


def test_withdrawing_a_partners_key_revokes_its_live_tokens_and_adding_one_does_not(
    shared: Patient, partner: Partner, token: Callable[..., str], rsa_key: RSAKey, ec_key: RSAKey, other_rsa_key: RSAKey
) -> None:
    bearer = token()
    compliance: User = UserFactory()
    before = partner.jwks
    partner.jwks = {"keys": [*before["keys"], dict(other_rsa_key.as_dict(private=False)) | {"kid": "rsa-2"}]}
    partner.save()
    assert partner_keys_changed(actor=compliance, partner=partner, before=before, request=None) == 0
    assert get(f"Patient/{shared.row_uid}", bearer).status_code == 200
    before = partner.jwks
    partner.jwks = public_jwks(ec_key)  # rsa-1 and rsa-2 withdrawn
    partner.save()
    assert partner_keys_changed(actor=compliance, partner=partner, before=before, request=None) == 1
    outcome(get(f"Patient/{shared.row_uid}", bearer), 401)
    assert AuthEventRecord.objects.filter(event="partner_token_revoked").count() == 1


def _admin_form(partner: Partner, jwks: dict[str, Any], rate: int) -> dict[str, str]:
    return {
        "name": partner.name,
        "client_id": partner.client_id,
        "allowed_scopes": json.dumps(partner.allowed_scopes),
        "rate_limit_per_minute": str(rate),
        "jwks": json.dumps(jwks),
    }


def test_the_admin_revokes_live_tokens_when_the_keys_change_and_only_then(
    shared: Patient,
    partner: Partner,
    token: Callable[..., str],
    rsa_key: RSAKey,
    ec_key: RSAKey,
    other_rsa_key: RSAKey,
    client_for: Callable[[User], Client],
    compliance: User,
) -> None:
    bearer = token()
    admin = client_for(compliance)
    url = f"/admin/exchange/partner/{partner.pk}/change/"
    # Another field changed, and a key added: the token lives on.
    response = admin.post(url, _admin_form(partner, public_jwks(rsa_key, ec_key), rate=999))
    assert response.status_code == 302, response.content[:2000]
    assert get(f"Patient/{shared.row_uid}", bearer).status_code == 200
    added = {
        "keys": [*public_jwks(rsa_key, ec_key)["keys"], dict(other_rsa_key.as_dict(private=False)) | {"kid": "rsa-2"}]
    }
    response = admin.post(url, _admin_form(partner, added, rate=999))
    assert response.status_code == 302, response.content[:2000]
    assert get(f"Patient/{shared.row_uid}", bearer).status_code == 200
    # A key withdrawn: the token ends at once.
    response = admin.post(url, _admin_form(partner, public_jwks(other_rsa_key), rate=999))
    assert response.status_code == 302, response.content[:2000]
    outcome(get(f"Patient/{shared.row_uid}", bearer), 401)
    (revoked,) = AuthEventRecord.objects.filter(event="partner_token_revoked")
    assert revoked.actor_id == compliance.pk


# --- minimum necessary ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("purpose", "with_ssn"),
    [("treatment", True), ("payment", True), ("research", False), ("public_health", False), ("operations", False)],
)
def test_the_national_id_goes_only_to_partners_sharing_for_treatment_or_payment(
    purpose: str, with_ssn: bool, partner: Partner, token: Callable[..., str]
) -> None:
    patient = PatientFactory(mrn="API-SSN-1", national_id="078-05-1120")
    DataSharing.objects.create(partner=partner, patient=patient, purpose=purpose)
    resource = get(f"Patient/{patient.row_uid}", token()).json()
    values = [identifier["value"] for identifier in resource["identifier"]]
    assert ("078-05-1120" in values) is with_ssn
    assert "API-SSN-1" in values
    everything = json.dumps(get(f"Patient/{patient.row_uid}/$everything", token()).json())
    assert ("078-05-1120" in everything) is with_ssn
