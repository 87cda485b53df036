"""POST /fhir/r4/auth/token: SMART Backend Services, and every way an assertion is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from joserfc import jws
from joserfc.jwk import ECKey, RSAKey

from accounts.signals import AuthEvent
from audit.models import AuthEventRecord
from exchange.partners.models import AccessToken, Partner
from exchange.partners.services import token_hash
from tests.exchange.api.conftest import TOKEN_URL, TokenCall, assertion

pytestmark = pytest.mark.django_db


def refused_with(response: Any, error: str, status: int) -> None:
    assert response.status_code == status, response.content
    # The OAuth code alone: nothing says which check failed.
    assert response.json() == {"error": error}
    assert "no-store" in response["Cache-Control"]


def last_event() -> AuthEventRecord:
    return AuthEventRecord.objects.order_by("-pk").first()  # type: ignore[return-value]


def test_partner_gets_a_token_with_an_rs384_assertion(
    partner: Partner, rsa_key: RSAKey, request_token: TokenCall
) -> None:
    response = request_token(assertion(rsa_key), scope="system/Patient.rs system/Observation.read")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["token_type"] == "bearer"
    assert 0 < body["expires_in"] <= 300
    assert body["scope"] == "system/Patient.rs system/Observation.read"
    assert "no-store" in response["Cache-Control"]
    row = AccessToken.objects.get()
    assert row.partner == partner
    assert row.scopes == ["system/Patient.rs", "system/Observation.rs"]
    assert row.token_hash == token_hash(body["access_token"])
    assert (row.expires_at - row.issued_at).total_seconds() <= 300
    event = last_event()
    assert event.event == AuthEvent.PARTNER_TOKEN_ISSUED
    assert event.username == "partner:northside"
    assert event.detail["partner_id"] == partner.pk
    assert body["access_token"] not in json.dumps(event.detail)


def test_partner_gets_a_token_with_an_es384_assertion(
    partner: Partner, ec_key: ECKey, request_token: TokenCall
) -> None:
    response = request_token(assertion(ec_key))
    assert response.status_code == 200, response.content
    assert response.json()["scope"] == "system/Patient.rs"


def test_granted_scopes_are_the_requested_ones_the_partner_is_allowed(
    partner: Partner, rsa_key: RSAKey, request_token: TokenCall
) -> None:
    response = request_token(assertion(rsa_key), scope="system/Patient.rs system/Condition.rs patient/Patient.rs")
    assert response.json()["scope"] == "system/Patient.rs"
    wildcard = request_token(assertion(rsa_key), scope="system/*.read")
    assert wildcard.json()["scope"] == "system/Observation.rs system/Patient.rs"


def test_scope_not_allowed_is_refused(partner: Partner, rsa_key: RSAKey, request_token: TokenCall) -> None:
    refused_with(request_token(assertion(rsa_key), scope="system/Condition.rs"), "invalid_scope", 400)
    refused_with(request_token(assertion(rsa_key), scope="system/Patient.write"), "invalid_scope", 400)
    refused_with(request_token(assertion(rsa_key), scope=""), "invalid_scope", 400)
    assert not AccessToken.objects.exists()
    assert last_event().event == AuthEvent.PARTNER_TOKEN_REFUSED
    assert last_event().detail == {"error": "invalid_scope", "reason": "scope", "partner_id": partner.pk}


def test_assertion_signed_by_another_key_is_refused(
    partner: Partner, other_rsa_key: RSAKey, request_token: TokenCall
) -> None:
    refused_with(request_token(assertion(other_rsa_key)), "invalid_client", 401)
    assert last_event().detail["reason"] == "bad_signature"


def test_unknown_client_id_is_refused_and_recorded_without_the_typed_name(
    partner: Partner, rsa_key: RSAKey, request_token: TokenCall
) -> None:
    refused_with(request_token(assertion(rsa_key, iss="Jane Doe 1970-01-01")), "invalid_client", 401)
    event = last_event()
    assert event.event == AuthEvent.PARTNER_TOKEN_REFUSED
    assert event.username == "partner:unknown"
    assert "Jane" not in json.dumps(event.detail)


def test_expired_assertion_is_refused(partner: Partner, rsa_key: RSAKey, request_token: TokenCall) -> None:
    refused_with(request_token(assertion(rsa_key, exp_in=-5)), "invalid_client", 401)
    assert last_event().detail["reason"] == "expired"


def test_assertion_expiring_more_than_five_minutes_ahead_is_refused(
    partner: Partner, rsa_key: RSAKey, request_token: TokenCall
) -> None:
    refused_with(request_token(assertion(rsa_key, exp_in=3600)), "invalid_client", 401)
    assert last_event().detail["reason"] == "exp_too_far"


def test_replayed_jti_is_refused(partner: Partner, rsa_key: RSAKey, request_token: TokenCall) -> None:
    signed = assertion(rsa_key, jti="once")
    assert request_token(signed).status_code == 200
    refused_with(request_token(signed), "invalid_grant", 400)
    # Even re-signed with a new exp, the same jti does not come back.
    refused_with(request_token(assertion(rsa_key, jti="once", exp_in=200)), "invalid_grant", 400)
    assert AccessToken.objects.count() == 1
    assert last_event().detail["reason"] == "replayed_jti"


@pytest.mark.parametrize(
    "aud", ["http://evil.example/fhir/r4/auth/token", "http://testserver/fhir/r4/metadata", ["x"], None]
)
def test_wrong_audience_is_refused(partner: Partner, rsa_key: RSAKey, request_token: TokenCall, aud: Any) -> None:
    refused_with(request_token(assertion(rsa_key, aud=aud)), "invalid_client", 401)


def test_audience_list_with_the_token_url_is_accepted(
    partner: Partner, rsa_key: RSAKey, request_token: TokenCall
) -> None:
    assert request_token(assertion(rsa_key, aud=["x", TOKEN_URL])).status_code == 200


def test_audience_is_the_configured_public_url(
    partner: Partner, rsa_key: RSAKey, request_token: TokenCall, settings: Any
) -> None:
    settings.FHIR_BASE_URL = "https://ehr.example.org/fhir/r4/"
    refused_with(request_token(assertion(rsa_key)), "invalid_client", 401)
    assert request_token(assertion(rsa_key, aud="https://ehr.example.org/fhir/r4/auth/token")).status_code == 200


def test_sub_other_than_iss_is_refused(partner: Partner, rsa_key: RSAKey, request_token: TokenCall) -> None:
    refused_with(request_token(assertion(rsa_key, sub="someone-else")), "invalid_client", 401)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims() -> dict[str, Any]:
    return {"iss": "northside", "sub": "northside", "aud": TOKEN_URL, "exp": int(time.time() + 60), "jti": "x1"}


def test_alg_none_is_refused(partner: Partner, request_token: TokenCall) -> None:
    unsigned = ".".join(
        [_b64(json.dumps({"alg": "none", "kid": "rsa-1"}).encode()), _b64(json.dumps(_claims()).encode()), ""]
    )
    refused_with(request_token(unsigned), "invalid_client", 401)
    assert last_event().detail["reason"] == "algorithm"


def test_hs384_keyed_with_the_public_key_is_refused(
    partner: Partner, rsa_key: RSAKey, request_token: TokenCall
) -> None:
    # The classic confusion: the public key's PEM (or its n) used as an HMAC secret. joserfc will not
    # even build such a token, so it is made by hand.
    def hs384(secret: bytes, alg_in_header: str = "HS384") -> str:
        signing_input = f"{_b64(json.dumps({'alg': alg_in_header, 'kid': 'rsa-1'}).encode())}.{_b64(json.dumps(_claims()).encode())}"
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha384).digest()
        return f"{signing_input}.{_b64(mac)}"

    public_pem = rsa_key.as_pem(private=False)
    forged = hs384(public_pem)
    refused_with(request_token(forged), "invalid_client", 401)
    refused_with(request_token(hs384(rsa_key.as_dict(private=False)["n"].encode())), "invalid_client", 401)
    # The header claiming RS384 over an HMAC signature.
    refused_with(request_token(hs384(public_pem, "RS384")), "invalid_client", 401)
    assert not AccessToken.objects.exists()


def test_rs256_is_refused(partner: Partner, rsa_key: RSAKey, request_token: TokenCall) -> None:
    refused_with(request_token(assertion(rsa_key, alg="RS256")), "invalid_client", 401)


def test_unsupported_grant_type(partner: Partner, rsa_key: RSAKey, request_token: TokenCall) -> None:
    refused_with(request_token(assertion(rsa_key), grant_type="password"), "unsupported_grant_type", 400)


def test_wrong_assertion_type_or_no_assertion(partner: Partner, rsa_key: RSAKey, request_token: TokenCall) -> None:
    refused_with(request_token(assertion(rsa_key), client_assertion_type="bearer"), "invalid_client", 401)
    refused_with(request_token(""), "invalid_client", 401)


@pytest.mark.parametrize(
    "garbage",
    ["not-a-jwt", "a.b.c", "e30.e30.", "W10.W10.AA", "x" * 9000, "Ω.Ω.Ω", _b64(b'{"alg":"RS384"}') + ".bnVsbA.AA"],
)
def test_malformed_assertions_are_refused_never_a_500(partner: Partner, request_token: TokenCall, garbage: str) -> None:
    refused_with(request_token(garbage), "invalid_client", 401)


def test_client_id_parameter_must_match_the_assertion(
    partner: Partner, rsa_key: RSAKey, request_token: TokenCall
) -> None:
    refused_with(request_token(assertion(rsa_key), client_id="someone"), "invalid_client", 401)
    assert request_token(assertion(rsa_key), client_id="northside").status_code == 200


def test_suspended_partner_gets_no_token(partner: Partner, rsa_key: RSAKey, request_token: TokenCall) -> None:
    partner.status = Partner.Status.SUSPENDED
    partner.save()
    refused_with(request_token(assertion(rsa_key)), "invalid_client", 401)
    assert last_event().detail["reason"] == "partner_suspended"


def test_unknown_kid_is_refused(partner: Partner, rsa_key: RSAKey, request_token: TokenCall) -> None:
    refused_with(request_token(assertion(rsa_key, kid="nope")), "invalid_client", 401)


def test_assertion_without_kid_is_refused(partner: Partner, rsa_key: RSAKey, request_token: TokenCall) -> None:
    signed = jws.serialize_compact({"alg": "RS384"}, json.dumps(_claims()), rsa_key, algorithms=["RS384"])
    refused_with(request_token(signed), "invalid_client", 401)


def test_iat_in_the_future_is_refused(partner: Partner, rsa_key: RSAKey, request_token: TokenCall) -> None:
    refused_with(request_token(assertion(rsa_key, iat=int(time.time()) + 600)), "invalid_client", 401)


def test_get_is_not_allowed_and_json_body_is_refused(
    partner: Partner, rsa_key: RSAKey, request_token: TokenCall
) -> None:
    assert request_token.client.get("/fhir/r4/auth/token").status_code == 405
    response = request_token.client.post(
        "/fhir/r4/auth/token",
        json.dumps({"grant_type": "client_credentials"}),
        content_type="application/json",
    )
    refused_with(response, "invalid_request", 400)


def test_tokens_are_stored_hashed(partner: Partner, rsa_key: RSAKey, request_token: TokenCall) -> None:
    token = request_token(assertion(rsa_key)).json()["access_token"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM exchange_accesstoken")
        rows = cursor.fetchall()
        cursor.execute("SELECT detail, username FROM audit_autheventrecord")
        events = cursor.fetchall()
    assert rows
    assert token not in repr(rows)
    assert token not in repr(events)
    assert token_hash(token) in repr(rows)


def test_token_endpoint_needs_no_csrf_token_or_session(partner: Partner, rsa_key: RSAKey) -> None:
    # Partners are machines: no cookie, no CSRF token; the signed assertion is the proof.
    strict = TokenCall(Client(enforce_csrf_checks=True))
    response = strict(assertion(rsa_key))
    assert response.status_code == 200, response.content
    assert "sessionid" not in response.cookies


def test_refusals_never_answer_500_on_odd_forms(partner: Partner, request_token: TokenCall) -> None:
    for assertion_text, scope in (("a" * 100_000, "system/Patient.rs"), ("x.y.z", "system/Patient.rs " * 5000)):
        response = request_token(assertion_text, scope=scope)
        assert response.status_code in (400, 401), response.status_code


def test_token_requests_from_one_address_are_limited_before_any_assertion_is_checked(
    partner: Partner, rsa_key: RSAKey, request_token: TokenCall, settings: Any
) -> None:
    settings.PARTNER_TOKEN_REQUESTS_PER_MINUTE = 3
    for _ in range(3):
        assert request_token("garbage").status_code == 401
    flooded = request_token("garbage")
    assert flooded.status_code == 429
    assert flooded.json() == {"error": "slow_down"}
    assert 1 <= int(flooded["Retry-After"]) <= 60
    # Even a valid assertion waits for the next window: the limit comes first.
    assert request_token(assertion(rsa_key)).status_code == 429
    refused = AuthEventRecord.objects.filter(event="partner_token_refused", detail__reason="rate_limited")
    assert refused.count() == 2
