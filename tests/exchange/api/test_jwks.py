"""A partner's JWKS is validated before it is stored: public keys only, strong enough, named."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OctKey, RSAKey

from exchange.partners.jwks import key_for, validate_jwks
from exchange.partners.models import Partner
from exchange.partners.scopes import grant, normalise, validate_scope_list
from tests.exchange.api.conftest import public_jwks


def refused(jwks: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        validate_jwks(jwks)


def test_public_rsa_and_p384_keys_are_accepted(rsa_key: RSAKey, ec_key: ECKey) -> None:
    validate_jwks(public_jwks(rsa_key, ec_key))
    # Pasted as text, as the admin's form may hand it over.
    validate_jwks(json.dumps(public_jwks(ec_key)))


@pytest.mark.parametrize("member", ["d", "p", "q", "dp", "dq", "qi"])
def test_private_rsa_members_are_refused(rsa_key: RSAKey, member: str) -> None:
    key = dict(rsa_key.as_dict(private=True))
    private = {k: v for k, v in key.items() if k in ("kty", "n", "e", "kid") or k == member}
    refused({"keys": [private]}, "private key material")


def test_full_private_keys_are_refused_without_echoing_them(rsa_key: RSAKey, ec_key: ECKey) -> None:
    for key in (rsa_key, ec_key):
        with pytest.raises(ValidationError) as error:
            validate_jwks({"keys": [dict(key.as_dict(private=True))]})
        assert "private key material" in str(error.value)
        assert str(key.as_dict(private=True)["d"]) not in str(error.value)


def test_weak_or_wrong_keys_are_refused() -> None:
    with pytest.warns(SecurityWarning):
        small = RSAKey.generate_key(1024, {"kid": "small"}, private=True)
    refused(public_jwks(small), "at least 2048 bits")
    p256 = ECKey.generate_key("P-256", {"kid": "p256"})
    refused(public_jwks(p256), "P-384")
    secret = OctKey.generate_key(256, {"kid": "hmac"})
    refused({"keys": [dict(secret.as_dict())]}, "private key material")
    refused({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "kid": "e"}]}, "RSA or EC")


def test_shape_kid_alg_and_use_are_checked(rsa_key: RSAKey, ec_key: ECKey) -> None:
    public = dict(rsa_key.as_dict(private=False))
    refused("not json", "not valid JSON")
    refused([public], '"keys" list')
    refused({"keys": []}, "no keys")
    refused({"keys": [public] * 11}, "At most")
    refused({"keys": ["x"]}, "not a JSON object")
    refused({"keys": [{**public, "kid": ""}]}, "needs a kid")
    refused({"keys": [public, public]}, "its own kid")
    refused({"keys": [{**public, "alg": "RS256"}]}, "alg must be RS384")
    refused({"keys": [{**public, "use": "wrap"}]}, "use must be sig or enc")
    refused({"keys": [{**public, "use": "enc", "alg": "RS384"}]}, "alg must be RSA-OAEP-256")
    refused({"keys": [{**public, "n": "%%%"}]}, "not a valid RSA public key|at least 2048")
    ec = dict(ec_key.as_dict(private=False))
    refused({"keys": [{**ec, "x": ec["y"]}]}, "not a valid EC public key")


def test_key_for_finds_by_kid_and_algorithm(rsa_key: RSAKey, ec_key: ECKey) -> None:
    jwks = public_jwks(rsa_key, ec_key)
    assert key_for(jwks, "rsa-1", "RS384") is not None
    assert key_for(jwks, "rsa-1", "ES384") is None
    assert key_for(jwks, "ec-1", "ES384") is not None
    assert key_for(jwks, "nope", "RS384") is None
    # A private key written behind the admin's back is not used.
    assert key_for({"keys": [dict(rsa_key.as_dict(private=True))]}, "rsa-1", "RS384") is None


@pytest.mark.django_db
def test_partner_with_a_private_key_cannot_be_saved_through_full_clean(rsa_key: RSAKey) -> None:
    partner = Partner(name="Leaky", client_id="leaky", allowed_scopes=["system/Patient.rs"], jwks=public_jwks(rsa_key))
    partner.full_clean()
    partner.jwks = {"keys": [dict(rsa_key.as_dict(private=True))]}
    with pytest.raises(ValidationError) as error:
        partner.full_clean()
    assert "jwks" in error.value.message_dict


def test_scopes() -> None:
    assert normalise("system/Patient.read") == "system/Patient.rs"
    assert normalise("system/Patient.cruds") is None
    assert normalise("user/Patient.rs") is None
    assert normalise("system/Encounter.rs") is None
    assert grant("system/Patient.rs system/Patient.read", ["system/Patient.rs"]) == (
        ["system/Patient.rs"],
        ["system/Patient.rs"],
    )
    validate_scope_list(["system/Patient.rs"])
    for bad in ("system/Patient.rs", ["system/*.rs"], [1], ["system/Encounter.rs"]):
        with pytest.raises(ValidationError):
            validate_scope_list(bad)
