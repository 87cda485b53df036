"""Signed and encrypted packages for partners (issue 12, DESIGN.md §9, ONC 170.315(d)(8)).

A package is a patient's FHIR Bundle inside two JOSE layers (joserfc; no hand-made crypto):

1. a compact JWS, signed with the hospital's current signing key (ES384, exchange/keys.py), header
   ``kid`` and ``typ`` = ``PACKAGE_TYPE``, over the canonical JSON (sorted keys, no spaces, UTF-8) of
   ``{"id": uuid4, "iss": sender, "aud": recipient, "iat": ..., "exp": ..., "sha256": digest of the
   bundle's canonical JSON, "bundle": {...}}``;
2. a compact JWE of that JWS to the recipient's encryption key (the partner's first ``use: enc``
   key when we send, ECDH-ES+A256KW or RSA-OAEP-256; ours when they send), content A256GCM,
   ``cty`` = ``PACKAGE_TYPE``, never compressed.

Opening (``open_package``) checks, in this order, and refuses (``PackageRefused``, with a ``reason``
code and a sentence that quotes nothing of the package) before anything of the content is parsed:
the size; the JWE header (no ``zip``: a compressed package could be a decompression bomb; an
algorithm we accept; a ``kid`` of one of our keys); decryption (authenticated: one changed byte
fails); the JWS header (``typ``, an algorithm we accept); the signature, against the signing key
that ``kid`` names among the registered, active partners (none: unknown signer). Only then is the
payload parsed: the claims (we are ``aud``, the signer's client_id is ``iss``), expiry, the digest
of the bundle, and replay (a package id received before). The ``Package`` row written by
``package_import`` makes the id used, in the same transaction as the import.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from joserfc import jwe, jws
from joserfc.errors import JoseError
from joserfc.jwe import JWERegistry
from joserfc.jwk import ECKey, RSAKey
from joserfc.jws import JWSRegistry

from exchange.fhir.importer import ImportFailed, TypeCounts, import_bundle, known_target, once_more_if_refused
from exchange.fhir.validate import BundleInvalid, ValidBundle, parse_bundle, validate_bundle
from exchange.keys import CONTENT_ALGORITHM, KEY_ALGORITHM, SIGNING_ALGORITHM, hospital_keys
from exchange.models import Package
from exchange.partners.jwks import ALGORITHM_FOR_KTY, encryption_key, key_for, signing_kids
from exchange.partners.models import Partner
from records.crypto import source_index
from records.db import mark_actor
from records.models import Patient

logger = logging.getLogger(__name__)

PACKAGE_TYPE = "healthcrypt-package+jws"
# What a partner may sign with (their registered key types) and encrypt to us with (our EC keys).
SIGNING_ALGORITHMS = tuple(ALGORITHM_FOR_KTY.values())
KEY_ALGORITHMS = (KEY_ALGORITHM, "RSA-OAEP-256")
# Clocks drift: an "iat" this far ahead of ours is still accepted.
CLOCK_SKEW_SECONDS = 300
# What joserfc and cryptography raise on bytes an attacker shaped (a point off the curve, an unknown
# curve name, bad base64...): each is a refusal, never a crash.
CRYPTO_ERRORS = (JoseError, ValueError, TypeError, KeyError, IndexError)


class PackageRefused(Exception):
    """A package was not accepted. ``reason`` is a short code, the message a sentence for people;
    neither quotes the package."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class PartnerKeyMissing(Exception):
    """The partner has no usable encryption key (``use: enc``) in its registered JWKS."""


@dataclass(frozen=True)
class OpenedPackage:
    """What ``open_package`` returns once every check passed."""

    partner: Partner
    bundle: dict[str, Any]
    package_id: uuid.UUID
    digest: str
    signing_kid: str
    issued_at: datetime
    expires_at: datetime


@dataclass
class ImportedPackage:
    package: Package
    counts: dict[str, TypeCounts] = field(default_factory=dict)


def canonical_json(value: Any) -> bytes:
    """The one serialisation that is signed and digested: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def bundle_digest(bundle: dict[str, Any]) -> str:
    """Hex SHA-256 of the bundle's canonical JSON."""
    return hashlib.sha256(canonical_json(bundle)).hexdigest()


def _jwe_registry(algorithms: list[str]) -> JWERegistry:
    registry = JWERegistry(algorithms=algorithms)
    # joserfc's default ceiling is 64 kB of ciphertext; a patient's bundle is megabytes. Our own size
    # check (PACKAGE_MAX_BYTES) has already run on the whole package.
    registry.max_ciphertext_length = int(settings.PACKAGE_MAX_BYTES)
    return registry


def _jws_registry(algorithms: list[str]) -> JWSRegistry:
    registry = JWSRegistry(algorithms=algorithms)
    registry.max_payload_length = int(settings.PACKAGE_MAX_BYTES)
    return registry


def seal(
    bundle: dict[str, Any],
    *,
    issuer: str,
    audience: str,
    signing_key: ECKey | RSAKey,
    recipient_key: ECKey | RSAKey,
    key_algorithm: str,
    package_id: uuid.UUID | None = None,
    issued_at: datetime | None = None,
    lifetime: timedelta | None = None,
) -> tuple[bytes, dict[str, Any]]:
    """The JWS-in-JWE bytes of a package and its claims (without the bundle). The building block of
    ``seal_package``; tests use it to play a partner."""
    issued = (issued_at or datetime.now(tz=UTC)).replace(microsecond=0)
    expires = issued + (lifetime or timedelta(seconds=settings.PACKAGE_LIFETIME_SECONDS))
    claims = {
        "id": str(package_id or uuid.uuid4()),
        "iss": issuer,
        "aud": audience,
        "iat": int(issued.timestamp()),
        "exp": int(expires.timestamp()),
        "sha256": bundle_digest(bundle),
    }
    alg = SIGNING_ALGORITHM if isinstance(signing_key, ECKey) else "RS384"
    signed = jws.serialize_compact(
        {"alg": alg, "kid": signing_key.kid, "typ": PACKAGE_TYPE},
        canonical_json({**claims, "bundle": bundle}),
        signing_key,
        registry=_jws_registry([alg]),
    )
    protected = {"alg": key_algorithm, "enc": CONTENT_ALGORITHM, "kid": recipient_key.kid, "cty": PACKAGE_TYPE}
    sealed = jwe.encrypt_compact(
        protected, signed.encode("ascii"), recipient_key, registry=_jwe_registry([key_algorithm, CONTENT_ALGORITHM])
    )
    return sealed.encode("ascii"), claims


def seal_package(bundle: dict[str, Any], partner: Partner, *, patient: Patient | None = None) -> bytes:
    """A package of ``bundle`` for ``partner``: signed with our current key, encrypted to the partner's
    encryption key; its id, digest and validity are recorded (a ``Package`` row, direction out).

    Raises PartnerKeyMissing when the partner registered no ``use: enc`` key, and
    exchange.keys.HospitalKeysUnavailable when our keys are not configured. The caller records the
    disclosure (DESIGN.md §9) in the same transaction."""
    found = encryption_key(partner.jwks)
    if found is None:
        raise PartnerKeyMissing(
            f'Partner "{partner.name}" has no encryption key: add a key with "use": "enc" '
            "(EC P-384 for ECDH-ES+A256KW, or RSA for RSA-OAEP-256) to its JWKS."
        )
    recipient_key, key_algorithm = found
    signer = hospital_keys().signer
    data, claims = seal(
        bundle,
        issuer=str(settings.PACKAGE_ISSUER),
        audience=partner.client_id,
        signing_key=signer,
        recipient_key=recipient_key,
        key_algorithm=key_algorithm,
    )
    with transaction.atomic():
        # The package table is guarded (audit/guards.py): its rows are written as the application's.
        mark_actor(None, job="package")
        _record_out(claims, partner=partner, patient=patient, signing_kid=str(signer.kid))
    return data


def _record_out(claims: dict[str, Any], *, partner: Partner, patient: Patient | None, signing_kid: str) -> None:
    Package.objects.create(
        package_id=uuid.UUID(claims["id"]),
        direction=Package.Direction.OUT,
        partner=partner,
        patient=patient,
        digest=claims["sha256"],
        signing_kid=signing_kid,
        issued_at=datetime.fromtimestamp(claims["iat"], tz=UTC),
        expires_at=datetime.fromtimestamp(claims["exp"], tz=UTC),
    )


# A protected header names an algorithm, a key id, a type and (JWE) an ephemeral public key: well
# under 1 kB. Read before anything is authenticated, so bounded before it is decoded.
MAX_HEADER_BYTES = 8192


def _header(segment: bytes, what: str) -> dict[str, Any]:
    """A JOSE protected header, decoded only to choose the key (it is authenticated afterwards)."""
    if len(segment) > MAX_HEADER_BYTES:
        raise PackageRefused("malformed", f"the {what} header is not valid.")
    try:
        padded = segment + b"=" * (-len(segment) % 4)
        header = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise PackageRefused("malformed", f"the {what} header is not valid.") from None
    if not isinstance(header, dict):
        raise PackageRefused("malformed", f"the {what} header is not valid.")
    return header


def _decrypt(data: bytes) -> bytes:
    """Steps 1-3: size, JWE header, decryption with our key. Returns the inner JWS."""
    limit = int(settings.PACKAGE_MAX_BYTES)
    if len(data) > limit:
        raise PackageRefused("too large", f"the package is over the limit of {limit} bytes (PACKAGE_MAX_BYTES).")
    data = data.strip()
    parts = data.split(b".")
    if len(parts) != 5:
        raise PackageRefused("malformed", "not a compact JWE (five dot-separated parts).")
    header = _header(parts[0], "encryption")
    if "zip" in header:
        raise PackageRefused(
            "compressed", "compressed packages (JWE zip) are refused: they could expand without bound."
        )
    if header.get("alg") not in KEY_ALGORITHMS or header.get("enc") != CONTENT_ALGORITHM:
        raise PackageRefused(
            "malformed", f"the package must be encrypted with {' or '.join(KEY_ALGORITHMS)} and {CONTENT_ALGORITHM}."
        )
    kid = header.get("kid")
    key = hospital_keys().decryption_key(kid) if isinstance(kid, str) else None
    if key is None:
        raise PackageRefused("wrong key", "the package is not encrypted to any of our keys (unknown kid).")
    try:
        opened = jwe.decrypt_compact(data, key, registry=_jwe_registry([str(header["alg"]), CONTENT_ALGORITHM]))
    except CRYPTO_ERRORS:
        raise PackageRefused(
            "tampered", "decryption failed: the package was altered or encrypted with another key."
        ) from None
    return opened.plaintext or b""


def _verify(signed: bytes) -> tuple[list[Partner], str, bytes]:
    """Steps 4-5: the JWS header, then the signature against registered, active partners' keys: every
    partner whose key named ``kid`` verifies it (more than one if the same public key was registered
    twice; the signed issuer then says which, in :func:`_claims`)."""
    parts = signed.split(b".")
    if len(parts) != 3:
        raise PackageRefused("malformed", "the decrypted content is not a compact JWS.")
    header = _header(parts[0], "signature")
    if header.get("typ") != PACKAGE_TYPE:
        raise PackageRefused("malformed", f'the signed content is not a package (typ must be "{PACKAGE_TYPE}").')
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in SIGNING_ALGORITHMS or not isinstance(kid, str) or not kid:
        raise PackageRefused(
            "malformed", f"the package must be signed with {' or '.join(SIGNING_ALGORITHMS)} and name its kid."
        )
    candidates = [p for p in Partner.objects.filter(status=Partner.Status.ACTIVE) if kid in signing_kids(p.jwks)]
    verified_by: list[Partner] = []
    payload = b""
    for partner in candidates:
        key = key_for(partner.jwks, kid, str(alg))
        if key is None:
            continue
        try:
            verified = jws.deserialize_compact(signed, key, registry=_jws_registry([str(alg)]))
        except CRYPTO_ERRORS:
            continue
        verified_by.append(partner)
        payload = verified.payload
    if verified_by:
        return verified_by, kid, payload
    if candidates:
        raise PackageRefused("tampered", "the signature does not verify with the signer's registered key.")
    raise PackageRefused("unknown signer", "no active registered partner has the key that signed this package.")


def _claims(signers: list[Partner], payload: bytes) -> tuple[Partner, dict[str, Any], dict[str, Any]]:
    """Step 6: the signed claims and the bundle, checked; the partner is the signer the signed issuer
    names (a key another partner registered as well cannot take a partner's packages from it)."""
    try:
        parsed = parse_bundle(payload)
    except BundleInvalid as error:
        raise PackageRefused("malformed", f"the signed content is not acceptable JSON ({error.problems[0]}).") from None
    bundle = parsed.get("bundle")
    if not isinstance(bundle, dict):
        raise PackageRefused("malformed", "the package holds no bundle.")
    claims = {name: value for name, value in parsed.items() if name != "bundle"}
    partner = next((signer for signer in signers if claims.get("iss") == signer.client_id), None)
    if partner is None:
        raise PackageRefused("unknown signer", "the package's issuer is not the partner whose key signed it.")
    if claims.get("aud") != str(settings.PACKAGE_ISSUER):
        raise PackageRefused("not for us", "the package is addressed to another recipient.")
    if not isinstance(claims.get("id"), str):
        raise PackageRefused("malformed", "the package has no id.")
    try:
        uuid.UUID(claims["id"])
    except ValueError:
        raise PackageRefused("malformed", "the package id is not a UUID.") from None
    for name in ("iat", "exp"):
        stamp = claims.get(name)
        # Seconds since 1970, before the year 2242 (2**33): a datetime can hold it on every platform.
        if not isinstance(stamp, int) or isinstance(stamp, bool) or not 0 <= stamp < 2**33:
            raise PackageRefused("malformed", f"the package's {name} is not a timestamp.")
    if not isinstance(claims.get("sha256"), str):
        raise PackageRefused("malformed", "the package has no digest.")
    return partner, claims, bundle


def open_package(data: bytes, *, now: datetime | None = None) -> OpenedPackage:
    """The partner and the bundle of a package sent to us, once every check passed (see the module's
    docstring for the order). Raises PackageRefused. Writes nothing; ``package_import`` records it."""
    signed = _decrypt(data)
    signers, kid, payload = _verify(signed)
    partner, claims, bundle = _claims(signers, payload)
    moment = now or datetime.now(tz=UTC)
    issued = datetime.fromtimestamp(claims["iat"], tz=UTC)
    expires = datetime.fromtimestamp(claims["exp"], tz=UTC)
    if expires <= moment:
        raise PackageRefused("expired", "the package has expired.")
    if issued > moment + timedelta(seconds=CLOCK_SKEW_SECONDS) or expires <= issued:
        raise PackageRefused("malformed", "the package's issue time is in the future or after its expiry.")
    if expires - issued > timedelta(seconds=settings.PACKAGE_MAX_LIFETIME_SECONDS):
        raise PackageRefused(
            "malformed", "the package is valid for longer than we accept (PACKAGE_MAX_LIFETIME_SECONDS)."
        )
    digest = bundle_digest(bundle)
    if digest != claims["sha256"]:
        raise PackageRefused("tampered", "the bundle's SHA-256 digest does not match the signed one.")
    package_id = uuid.UUID(claims["id"])
    if Package.objects.filter(direction=Package.Direction.IN, package_id=package_id).exists():
        raise PackageRefused("replayed", "this package was received before.")
    return OpenedPackage(
        partner=partner,
        bundle=bundle,
        package_id=package_id,
        digest=digest,
        signing_kid=kid,
        issued_at=issued,
        expires_at=expires,
    )


def package_import(data: bytes, *, actor: Any) -> ImportedPackage:
    """Open a package sent to us and import its bundle (exchange/fhir/importer.py) as ``actor``.

    One transaction: the ``Package`` row (which makes the id used) and the imported rows commit
    together or not at all. Raises PackageRefused for the package, BundleInvalid for its bundle."""
    opened = open_package(data)
    valid = validate_bundle(opened.bundle, known=known_target)
    try:
        # Two packages about one patient at once: the one refused by the records' unique index is
        # imported once more and finds the other's rows (as import_fhir does).
        package, counts = once_more_if_refused(
            lambda: _package_import_once(opened, valid, actor), what=f"Package {opened.package_id}"
        )
    except (IntegrityError, ImportFailed):
        _refuse_if_replayed(opened)
        raise
    logger.info("Package imported: partner #%s, package %s", opened.partner.pk, opened.package_id)
    return ImportedPackage(package=package, counts=counts)


def _package_import_once(
    opened: OpenedPackage, valid: ValidBundle, actor: Any
) -> tuple[Package, dict[str, TypeCounts]]:
    patient_ids = [entry.resource_id for entry in valid.entries if entry.resource_type == "Patient"]
    with transaction.atomic():
        mark_actor(None, job="package")  # the guarded package row; the import marks its own rows
        package = Package.objects.create(
            package_id=opened.package_id,
            direction=Package.Direction.IN,
            partner=opened.partner,
            digest=opened.digest,
            signing_kid=opened.signing_kid,
            issued_at=opened.issued_at,
            expires_at=opened.expires_at,
        )
        counts = import_bundle(valid, actor=actor)
        if len(patient_ids) == 1:
            package.patient = Patient.objects.filter(source_id=source_index("Patient", patient_ids[0])).first()
            package.save(update_fields=["patient"])
    return package, counts


def _refuse_if_replayed(opened: OpenedPackage) -> None:
    if Package.objects.filter(direction=Package.Direction.IN, package_id=opened.package_id).exists():
        raise PackageRefused("replayed", "this package was received before.") from None
