"""Packages built to break the reader rather than to pass it: a header nested to exhaust the parser,
timestamps no date can hold, and a partner that registered another partner's public key. Each is a
clear refusal (never a traceback) and a partner's genuine packages keep opening."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from joserfc import jwe, jws
from joserfc.jwk import ECKey

from accounts.models import User
from exchange.keys import hospital_keys
from exchange.packages import PACKAGE_TYPE, PackageRefused, _jws_registry, canonical_json, open_package
from exchange.partners.models import Partner
from tests.exchange.packages.conftest import TINY_BUNDLE, from_partner, public

pytestmark = pytest.mark.django_db


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _to_us(inner: bytes) -> bytes:
    ours = hospital_keys().decryption[0]
    return jwe.encrypt_compact(
        {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "kid": ours.kid},
        inner,
        ours,
        algorithms=["ECDH-ES+A256KW", "A256GCM"],
    ).encode()


def _refusal(data: bytes) -> str:
    with pytest.raises(PackageRefused) as refused:
        open_package(data)
    return refused.value.reason


def test_a_jwe_header_nested_past_the_parsers_depth_is_malformed(partner: Partner) -> None:
    assert _refusal(_b64(b"[" * 200_000) + b".a.b.c.d") == "malformed"
    assert _refusal(_b64(b"[" * 2_000) + b".a.b.c.d") == "malformed"  # under the size cap, still nested


def test_a_signature_header_nested_inside_a_jwe_anyone_can_make_is_malformed(partner: Partner) -> None:
    inner = _b64(b'{"typ":' + b"[" * 5_000 + b"]" * 5_000 + b"}") + b".e30.AAAA"
    assert _refusal(_to_us(inner)) == "malformed"


def test_import_package_refuses_a_nested_header_with_a_message_not_a_traceback(
    partner: Partner, front_desk: User, tmp_path: Any
) -> None:
    path = tmp_path / "nested.jwe"
    path.write_bytes(_b64(b"[" * 200_000) + b".a.b.c.d")
    with pytest.raises(CommandError, match="malformed"):
        call_command("import_package", str(path), actor=front_desk.username)


@pytest.mark.parametrize(
    ("iat", "exp"),
    [(-(10**13), 10**13), (0, 10**18), (-1, 100), (1, 2**33)],
    ids=["year -314918", "exp 10**18", "negative iat", "exp 2**33"],
)
def test_timestamps_no_date_can_hold_are_malformed(partner: Partner, partner_sig: ECKey, iat: int, exp: int) -> None:
    claims = {
        "id": str(uuid.uuid4()),
        "iss": "northside",
        "aud": str(settings.PACKAGE_ISSUER),
        "iat": iat,
        "exp": exp,
        "sha256": "",
        "bundle": TINY_BUNDLE,
    }
    signed = jws.serialize_compact(
        {"alg": "ES384", "kid": partner_sig.kid, "typ": PACKAGE_TYPE},
        canonical_json(claims),
        partner_sig,
        registry=_jws_registry(["ES384"]),
    )
    assert _refusal(_to_us(signed.encode())) == "malformed"


def test_a_partner_that_registers_anothers_public_key_cannot_take_its_packages(
    partner: Partner, partner_sig: ECKey
) -> None:
    # Written behind the admin's back (the admin refuses it, below), named to sort first.
    Partner.objects.create(
        name="Aaa Copycat", client_id="aaa-copycat", allowed_scopes=[], jwks={"keys": [public(partner_sig)]}
    )
    opened = open_package(from_partner(TINY_BUNDLE, partner_sig))
    assert opened.partner.client_id == "northside"


def test_a_public_key_registered_to_another_partner_is_refused(partner: Partner, partner_sig: ECKey) -> None:
    copycat = Partner(
        name="Copycat", client_id="copycat", allowed_scopes=["system/Patient.rs"], jwks={"keys": [public(partner_sig)]}
    )
    with pytest.raises(ValidationError) as refused:
        copycat.full_clean()
    assert "registered to another partner" in str(refused.value.message_dict["jwks"])
    # The partner itself saves its own keys again without a complaint.
    partner.allowed_scopes = ["system/Patient.rs"]
    partner.full_clean()


def test_an_oversized_header_is_refused_before_it_is_decoded(partner: Partner) -> None:
    header: dict[str, Any] = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "kid": "x" * 10_000}
    assert _refusal(_b64(json.dumps(header).encode()) + b".a.b.c.d") == "malformed"
