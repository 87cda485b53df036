"""Signed and encrypted packages (exchange/packages.py): the round trip both ways, and every package
that must be refused (wrong key, a changed byte, unknown signer, expired, replayed, too large,
compressed, not for us, wrong digest) with nothing written."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from auditlog.models import LogEntry
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import Client
from joserfc import jwe, jws
from joserfc.jwe import JWERegistry
from joserfc.jwk import ECKey, KeySet, RSAKey

from accounts.models import User
from exchange import packages
from exchange.keys import HospitalKeys, hospital_keys
from exchange.models import Package
from exchange.packages import PackageRefused, PartnerKeyMissing, bundle_digest, open_package, seal_package
from exchange.partners.models import Partner
from records.models import Patient
from tests.exchange.packages.conftest import DAY, TINY_BUNDLE, from_partner, public

pytestmark = pytest.mark.django_db

SAMPLES = Path(settings.BASE_DIR).parent / "shared" / "data" / "fhir" / "synthea-r4"
PATIENT_FILES = (
    sorted(p for p in SAMPLES.glob("*.json") if not p.name.startswith(("hospital", "practitioner")))
    if SAMPLES.is_dir()
    else []
)
needs_samples = pytest.mark.skipif(
    not PATIENT_FILES or not Path(settings.FHIR_SCHEMA_PATH).is_file(),
    reason="the shared Synthea samples and R4 schema (../shared/data) are absent",
)


def reason(data: bytes) -> str:
    with pytest.raises(PackageRefused) as refused:
        open_package(data)
    return refused.value.reason


def small_bundle() -> dict[str, Any]:
    path = min(PATIENT_FILES, key=lambda p: p.stat().st_size)
    return dict(json.loads(path.read_text()))


# --- what we publish and send -------------------------------------------------------------------


def test_well_known_jwks_is_public_short_cached_and_never_holds_a_private_member(client: Client) -> None:
    response = client.get("/.well-known/jwks.json")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/jwk-set+json"
    assert "max-age=300" in response["Cache-Control"]
    assert "public" in response["Cache-Control"]
    keys = response.json()["keys"]
    ours = hospital_keys()
    assert [k["kid"] for k in keys] == [k.kid for k in (*ours.signing, *ours.decryption)]
    for key in keys:
        assert not {"d", "p", "q", "dp", "dq", "qi", "oth", "k"} & set(key), key["kid"]
    assert {k["use"] for k in keys} == {"sig", "enc"}


def test_well_known_jwks_fails_closed_without_keys_or_with_a_private_member(
    client: Client, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    leaky = {"keys": [{**dict(hospital_keys().signer.as_dict(private=True))}]}
    monkeypatch.setattr(HospitalKeys, "public_jwks", lambda self: leaky)
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 503
    assert b'"d"' not in response.content
    assert "no-store" in response["Cache-Control"]  # only the real key set may be cached
    monkeypatch.undo()

    settings.HOSPITAL_JWKS_FILE = "/nonexistent/hospital-jwks.json"
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 503
    assert "no-store" in response["Cache-Control"]


def test_a_package_we_seal_opens_on_the_partner_side_with_its_private_key_and_our_public_jwks(
    client: Client, partner: Partner, partner_enc: RSAKey
) -> None:
    bundle = {**TINY_BUNDLE, "id": "b-1"}

    data = seal_package(bundle, partner)

    # The partner: decrypt with its private key, verify with what our well-known URL publishes.
    inner = jwe.decrypt_compact(data, partner_enc, algorithms=["RSA-OAEP-256", "A256GCM"]).plaintext or b""
    published = KeySet.import_key_set(client.get("/.well-known/jwks.json").json())
    verified = jws.deserialize_compact(inner, published, algorithms=["ES384"])
    assert verified.headers()["typ"] == packages.PACKAGE_TYPE
    claims = json.loads(verified.payload)
    assert claims["bundle"] == bundle
    assert claims["aud"] == "northside"
    assert claims["iss"] == settings.PACKAGE_ISSUER
    assert claims["sha256"] == bundle_digest(bundle)
    row = Package.objects.get()
    assert (row.direction, row.partner, row.digest, str(row.package_id)) == (
        "out",
        partner,
        claims["sha256"],
        claims["id"],
    )
    assert row.signing_kid == hospital_keys().signer.kid
    assert row.expires_at - row.issued_at == timedelta(seconds=settings.PACKAGE_LIFETIME_SECONDS)


def test_a_partner_without_an_encryption_key_gets_no_package(partner: Partner, partner_sig: ECKey) -> None:
    partner.jwks = {"keys": [public(partner_sig)]}
    partner.save()

    with pytest.raises(PartnerKeyMissing, match='"use": "enc"'):
        seal_package(TINY_BUNDLE, partner)
    assert not Package.objects.exists()


# --- what partners send us ----------------------------------------------------------------------


def test_a_partner_package_opens_to_its_partner_and_bundle(partner: Partner, partner_sig: ECKey) -> None:
    opened = open_package(from_partner(TINY_BUNDLE, partner_sig))

    assert opened.partner == partner
    assert opened.bundle == TINY_BUNDLE
    assert opened.signing_kid == "north-sig-1"
    assert not Package.objects.exists()  # opening writes nothing; importing records it


@needs_samples
def test_import_package_imports_the_bundle_records_the_package_and_refuses_it_again(
    partner: Partner, partner_sig: ECKey, front_desk: User, tmp_path: Path
) -> None:
    bundle = small_bundle()
    path = tmp_path / "package.jwe"
    path.write_bytes(from_partner(bundle, partner_sig))

    call_command("import_package", str(path), actor=front_desk.username)

    row = Package.objects.get()
    assert (row.direction, row.partner, row.digest) == ("in", partner, bundle_digest(bundle))
    assert row.patient is not None
    patients = Patient.objects.count()
    assert patients == 1
    with pytest.raises(CommandError, match=r"refused \(replayed\)"):
        call_command("import_package", str(path), actor=front_desk.username)
    assert (Package.objects.count(), Patient.objects.count()) == (1, patients)


@needs_samples
def test_an_invalid_bundle_in_a_valid_package_writes_neither_rows_nor_the_package(
    partner: Partner, partner_sig: ECKey, front_desk: User, tmp_path: Path
) -> None:
    bundle = small_bundle()
    bundle["entry"][0]["resource"]["birthDate"] = "not a date"
    path = tmp_path / "package.jwe"
    path.write_bytes(from_partner(bundle, partner_sig))

    with pytest.raises(CommandError, match="invalid bundle"):
        call_command("import_package", str(path), actor=front_desk.username)
    assert (Package.objects.count(), Patient.objects.count()) == (0, 0)


def test_import_package_refusals_name_the_reason_and_write_nothing(
    partner: Partner, stranger_sig: ECKey, front_desk: User, tmp_path: Path
) -> None:
    path = tmp_path / "package.jwe"
    path.write_bytes(from_partner(TINY_BUNDLE, stranger_sig))

    with pytest.raises(CommandError, match=r"refused \(unknown signer\).*Nothing was imported"):
        call_command("import_package", str(path), actor=front_desk.username)
    assert (Package.objects.count(), Patient.objects.count()) == (0, 0)


@pytest.mark.parametrize("where", ["header", "encrypted key", "iv", "ciphertext start", "ciphertext middle", "tag"])
def test_one_changed_byte_anywhere_is_refused(partner: Partner, partner_sig: ECKey, where: str) -> None:
    data = from_partner({**TINY_BUNDLE, "id": "x" * 200}, partner_sig)
    parts = data.split(b".")
    index, offset = {
        "header": (0, 10),
        "encrypted key": (1, 20),
        "iv": (2, 3),
        "ciphertext start": (3, 0),
        "ciphertext middle": (3, len(parts[3]) // 2),
        "tag": (4, 5),
    }[where]
    segment = bytearray(parts[index])
    segment[offset] = ord("A") if segment[offset] != ord("A") else ord("B")
    parts[index] = bytes(segment)

    assert reason(b".".join(parts)) in {"tampered", "malformed", "wrong key"}
    assert not Package.objects.exists()


def test_a_changed_byte_at_any_position_is_a_refusal_never_a_crash(partner: Partner, partner_sig: ECKey) -> None:
    data = from_partner(TINY_BUNDLE, partner_sig)
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    reasons = set()
    for position in range(0, len(data), 3):
        changed = bytearray(data)
        changed[position] = next(c for c in alphabet[position % 64 :] + alphabet if c != data[position])
        reasons.add(reason(bytes(changed)))

    assert reasons <= {"tampered", "malformed", "wrong key"}
    assert "tampered" in reasons


@pytest.mark.parametrize(
    "inner",
    [
        b"not a jws",
        b"a.b.c",
        b"eyJ0eXAiOiJoZWFsdGhjcnlwdC1wYWNrYWdlK2p3cyJ9.e30.AAAA",  # typ right, no alg or kid
        b"eyJhbGciOiJFUzM4NCIsImtpZCI6Im5vcnRoLXNpZy0xIiwidHlwIjoiaGVhbHRoY3J5cHQtcGFja2FnZStqd3MifQ.e30.%%%",
        b"eyJhbGciOiJub25lIiwia2lkIjoibm9ydGgtc2lnLTEiLCJ0eXAiOiJoZWFsdGhjcnlwdC1wYWNrYWdlK2p3cyJ9.e30.",
    ],
)
def test_anyone_can_encrypt_to_us_so_any_inner_content_is_refused_cleanly(partner: Partner, inner: bytes) -> None:
    ours = hospital_keys().decryption[0]
    data = jwe.encrypt_compact(
        {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "kid": ours.kid},
        inner,
        ours,
        algorithms=["ECDH-ES+A256KW", "A256GCM"],
    ).encode()

    assert reason(data) in {"malformed", "tampered"}


def test_a_package_for_another_key_is_refused(partner: Partner, partner_sig: ECKey) -> None:
    somebody = ECKey.generate_key("P-384", {"kid": "somebody-else"}, private=True)
    assert reason(from_partner(TINY_BUNDLE, partner_sig, recipient=somebody)) == "wrong key"
    # Another key that claims our kid: decryption fails.
    impostor = ECKey.generate_key("P-384", {"kid": hospital_keys().decryption[0].kid}, private=True)
    assert reason(from_partner(TINY_BUNDLE, partner_sig, recipient=impostor)) == "tampered"


def test_unknown_signers_are_refused(partner: Partner, partner_sig: ECKey, stranger_sig: ECKey) -> None:
    assert reason(from_partner(TINY_BUNDLE, stranger_sig)) == "unknown signer"
    # A stranger's key under the partner's kid does not verify.
    forged = ECKey.import_key({**dict(stranger_sig.as_dict(private=True)), "kid": "north-sig-1"})
    assert reason(from_partner(TINY_BUNDLE, forged)) == "tampered"
    # The right key, but claiming to be another partner.
    assert reason(from_partner(TINY_BUNDLE, partner_sig, issuer="southside")) == "unknown signer"
    # A suspended partner's packages are not accepted.
    partner.status = Partner.Status.SUSPENDED
    partner.save()
    assert reason(from_partner(TINY_BUNDLE, partner_sig)) == "unknown signer"


def test_a_partner_encryption_key_never_verifies_a_signature(partner: Partner, partner_enc: RSAKey) -> None:
    assert reason(from_partner(TINY_BUNDLE, partner_enc)) == "unknown signer"


def test_expired_and_overlong_packages_are_refused(partner: Partner, partner_sig: ECKey) -> None:
    old = datetime.now(tz=UTC) - 3 * DAY
    assert reason(from_partner(TINY_BUNDLE, partner_sig, issued_at=old, lifetime=DAY)) == "expired"
    assert reason(from_partner(TINY_BUNDLE, partner_sig, lifetime=365 * DAY)) == "malformed"
    future = datetime.now(tz=UTC) + DAY
    assert reason(from_partner(TINY_BUNDLE, partner_sig, issued_at=future)) == "malformed"


def test_a_package_received_before_is_refused_as_replayed(partner: Partner, partner_sig: ECKey) -> None:
    package_id = uuid.uuid4()
    data = from_partner(TINY_BUNDLE, partner_sig, package_id=package_id)
    opened = open_package(data)
    Package.objects.create(
        package_id=package_id,
        direction="in",
        partner=partner,
        digest=opened.digest,
        signing_kid=opened.signing_kid,
        issued_at=opened.issued_at,
        expires_at=opened.expires_at,
    )

    assert reason(data) == "replayed"


def test_a_package_for_another_recipient_is_refused(partner: Partner, partner_sig: ECKey) -> None:
    assert reason(from_partner(TINY_BUNDLE, partner_sig, audience="another-hospital")) == "not for us"


def test_a_digest_that_does_not_match_the_bundle_is_refused(
    partner: Partner, partner_sig: ECKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(packages, "bundle_digest", lambda bundle: "0" * 64)
    data = from_partner(TINY_BUNDLE, partner_sig)
    monkeypatch.undo()

    assert reason(data) == "tampered"


def test_oversized_packages_are_refused_before_anything_else(
    partner: Partner, partner_sig: ECKey, settings: Any, front_desk: User, tmp_path: Path
) -> None:
    data = from_partner({**TINY_BUNDLE, "id": "x" * 4000}, partner_sig)
    settings.PACKAGE_MAX_BYTES = 2048

    assert reason(data) == "too large"
    path = tmp_path / "big.jwe"
    path.write_bytes(data + b" " * 10_000_000)
    with pytest.raises(CommandError, match=r"refused \(too large\)"):
        call_command("import_package", str(path), actor=front_desk.username)


def test_compressed_packages_are_refused_unopened_so_a_decompression_bomb_cannot_expand(partner: Partner) -> None:
    bomb = b"{" + b" " * 5_000_000 + b"}"  # 5 MB of blanks: about 5 kB deflated
    ours = hospital_keys().decryption[0]
    registry = JWERegistry(algorithms=["ECDH-ES+A256KW", "A256GCM", "DEF"])
    registry.max_ciphertext_length = 10_000_000
    data = jwe.encrypt_compact(
        {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "zip": "DEF", "kid": ours.kid}, bomb, ours, registry=registry
    ).encode()
    assert len(data) < 20_000

    assert reason(data) == "compressed"


# --- keys: rotation, generation, checks ----------------------------------------------------------


def test_rotation_keeps_old_keys_working_and_the_new_one_signs(
    partner: Partner, partner_sig: ECKey, partner_enc: RSAKey, settings: Any, tmp_path: Path
) -> None:
    path = tmp_path / "keys.json"
    call_command("generate_hospital_keys", out=str(path))
    settings.HOSPITAL_JWKS_FILE = str(path)
    old = hospital_keys()
    sent_to_old_key = from_partner(TINY_BUNDLE, partner_sig)

    call_command("generate_hospital_keys", out=str(path), rotate=True)

    new = hospital_keys()
    assert new.signer.kid != old.signer.kid
    assert [key.kid for key in new.signing] == [new.signer.kid, old.signer.kid]
    assert open_package(sent_to_old_key).partner == partner
    seal_package(TINY_BUNDLE, partner)
    assert Package.objects.get().signing_kid == new.signer.kid
    assert (path.stat().st_mode & 0o777) == 0o600


def test_generate_hospital_keys_writes_0600_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    call_command("generate_hospital_keys", out=str(path))
    content = path.read_text()

    assert (path.stat().st_mode & 0o777) == 0o600
    assert {key["use"] for key in json.loads(content)["keys"]} == {"sig", "enc"}
    with pytest.raises(CommandError, match="refusing to overwrite"):
        call_command("generate_hospital_keys", out=str(path))
    assert path.read_text() == content
    with pytest.raises(CommandError, match="existing key file"):
        call_command("generate_hospital_keys", out=str(tmp_path / "absent.json"), rotate=True)


def test_checks_refuse_missing_keys_in_production_and_warn_on_a_readable_key_file(
    settings: Any, tmp_path: Path
) -> None:
    from exchange.checks import check_hospital_keys

    settings.DEBUG = False
    settings.HOSPITAL_JWKS = ""
    settings.HOSPITAL_JWKS_FILE = str(tmp_path / "absent.json")
    assert [m.id for m in check_hospital_keys()] == ["exchange.E003"]

    path = tmp_path / "keys.json"
    call_command("generate_hospital_keys", out=str(path))
    settings.HOSPITAL_JWKS_FILE = str(path)
    assert check_hospital_keys() == []
    path.chmod(0o640)
    assert [m.id for m in check_hospital_keys()] == ["exchange.W002"]
    path.write_text('{"keys": []}')
    path.chmod(0o600)
    assert [m.id for m in check_hospital_keys()] == ["exchange.E003"]


# --- the record, for compliance -------------------------------------------------------------------


def test_packages_are_in_the_change_history_and_compliance_sees_them_read_only(
    client_for: Callable[[User], Client], compliance: User, physician: User, partner: Partner
) -> None:
    seal_package(TINY_BUNDLE, partner)
    row = Package.objects.get()
    assert LogEntry.objects.get_for_object(row).count() == 1  # in the change history too

    client = client_for(compliance)
    listing = client.get("/admin/exchange/package/")
    assert listing.status_code == 200
    assert row.digest.encode() in listing.content
    assert client.get("/admin/exchange/package/add/").status_code == 403
    assert client_for(physician).get("/admin/exchange/package/").status_code in (302, 403)
