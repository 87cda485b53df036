"""A partner with real key pairs (generated here, never committed): a signing key it registered, an
encryption key it registered for the packages we send it, and a stranger's key."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from joserfc.jwk import ECKey, RSAKey

from exchange.keys import hospital_keys
from exchange.packages import seal
from exchange.partners.models import Partner


@pytest.fixture(scope="session")
def partner_sig() -> ECKey:
    return ECKey.generate_key("P-384", {"kid": "north-sig-1"}, private=True)


@pytest.fixture(scope="session")
def partner_enc() -> RSAKey:
    return RSAKey.generate_key(2048, {"kid": "north-enc-1"}, private=True)


@pytest.fixture(scope="session")
def stranger_sig() -> ECKey:
    return ECKey.generate_key("P-384", {"kid": "stranger-1"}, private=True)


def public(key: ECKey | RSAKey, **members: str) -> dict[str, Any]:
    return {**dict(key.as_dict(private=False)), **members}


@pytest.fixture
def partner(db: None, partner_sig: ECKey, partner_enc: RSAKey) -> Partner:
    return Partner.objects.create(
        name="Northside Clinic",
        client_id="northside",
        allowed_scopes=[],
        jwks={"keys": [public(partner_sig), public(partner_enc, use="enc", alg="RSA-OAEP-256")]},
    )


def from_partner(
    bundle: dict[str, Any],
    key: ECKey | RSAKey,
    *,
    issuer: str = "northside",
    audience: str | None = None,
    recipient: ECKey | RSAKey | None = None,
    **options: Any,
) -> bytes:
    """A package as the partner makes it: signed with ``key``, encrypted to our current key."""
    from django.conf import settings

    data, _ = seal(
        bundle,
        issuer=issuer,
        audience=audience if audience is not None else str(settings.PACKAGE_ISSUER),
        signing_key=key,
        recipient_key=recipient or hospital_keys().decryption[0],
        key_algorithm="ECDH-ES+A256KW",
        **options,
    )
    return data


TINY_BUNDLE: dict[str, Any] = {"resourceType": "Bundle", "type": "transaction", "entry": []}
DAY = datetime.timedelta(days=1)
