"""Partners with real key pairs (generated here with joserfc) and signed client assertions."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from exchange.partners.models import Partner
from exchange.partners.scopes import all_scopes

TOKEN_URL = "http://testserver/fhir/r4/auth/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture(scope="session")
def rsa_key() -> RSAKey:
    return RSAKey.generate_key(2048, {"kid": "rsa-1"})


@pytest.fixture(scope="session")
def ec_key() -> ECKey:
    return ECKey.generate_key("P-384", {"kid": "ec-1"})


@pytest.fixture(scope="session")
def other_rsa_key() -> RSAKey:
    """A stranger's key, given the partner's kid: its signatures must not verify."""
    return RSAKey.generate_key(2048, {"kid": "rsa-1"})


def public_jwks(*keys: RSAKey | ECKey) -> dict[str, Any]:
    return {"keys": [dict(key.as_dict(private=False)) for key in keys]}


@pytest.fixture
def partner(db: None, rsa_key: RSAKey, ec_key: ECKey) -> Partner:
    return Partner.objects.create(
        name="Northside Clinic",
        client_id="northside",
        allowed_scopes=["system/Patient.rs", "system/Observation.rs"],
        rate_limit_per_minute=5,
        jwks=public_jwks(rsa_key, ec_key),
    )


def assertion(
    key: RSAKey | ECKey,
    *,
    alg: str | None = None,
    iss: str = "northside",
    sub: str | None = None,
    aud: Any = TOKEN_URL,
    exp_in: float = 120,
    jti: str | None = None,
    kid: str | None = None,
    **claims: Any,
) -> str:
    alg = alg or ("RS384" if isinstance(key, RSAKey) else "ES384")
    header = {"alg": alg, "typ": "JWT", "kid": kid or key.kid}
    body = {
        "iss": iss,
        "sub": sub if sub is not None else iss,
        "aud": aud,
        "exp": int(time.time() + exp_in),
        "jti": jti or uuid.uuid4().hex,
        **claims,
    }
    return jwt.encode(header, body, key, algorithms=[alg])


@dataclass
class TokenCall:
    client: Client

    def __call__(self, client_assertion: str, scope: str = "system/Patient.rs", **overrides: str) -> Any:
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client_assertion,
            "scope": scope,
            **overrides,
        }
        return self.client.post(
            "/fhir/r4/auth/token", urlencode(form), content_type="application/x-www-form-urlencoded"
        )


@pytest.fixture
def request_token(db: None) -> TokenCall:
    return TokenCall(Client())


@pytest.fixture
def issue(partner: Partner, rsa_key: RSAKey, request_token: TokenCall) -> Callable[..., str]:
    """A fresh access token for the partner (all its allowed scopes unless told)."""

    def make(scope: str = " ".join(all_scopes())) -> str:
        response = request_token(assertion(rsa_key), scope=scope)
        assert response.status_code == 200, response.content
        return str(response.json()["access_token"])

    return make
