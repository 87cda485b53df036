"""A partner's public keys (JWKS, RFC 7517): validated before they are stored, loaded for verifying.

A partner signs its client assertions with its private key; we hold only the public half. A JWKS
pasted into the admin is refused unless every key is public (no ``d``, ``p``, ``q``... and no
symmetric ``oct`` key: a shared secret is not a partner's identity), of a kind our two algorithms
use (RSA of at least 2048 bits for RS384, EC on P-384 for ES384), and named by a unique ``kid``
(SMART Backend Services puts the ``kid`` in every assertion's header; we look the key up by it).

A key's ``use`` is ``sig`` (the default: assertions and the packages the partner signs) or ``enc``:
a key we encrypt the packages we send them to (exchange/packages.py), RSA-OAEP-256 for an RSA key,
ECDH-ES+A256KW for an EC P-384 key. A signing key never encrypts and an encryption key never verifies.
"""

from __future__ import annotations

import json
from typing import Any, cast

from django.core.exceptions import ValidationError
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey, import_key

# Members that only a private (or symmetric) key has (RFC 7518 §6.2.2, §6.3.2, §6.4.1).
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
# NIST SP 800-57: 2048-bit RSA is the floor for signatures today.
MIN_RSA_BITS = 2048
# ES384 is ECDSA over P-384 (RFC 7518 §3.4); a key on another curve cannot verify it.
EC_CURVE = "P-384"
# The algorithm each accepted key type verifies (SMART Backend Services requires RS384 and ES384).
ALGORITHM_FOR_KTY = {"RSA": "RS384", "EC": "ES384"}
# The key-management algorithm each key type is used with when ``use`` is ``enc`` (content: A256GCM).
ENCRYPTION_ALGORITHM_FOR_KTY = {"RSA": "RSA-OAEP-256", "EC": "ECDH-ES+A256KW"}
# A partner has a handful of keys (current and next, for rotation); more is a mistake.
MAX_KEYS = 10


def _int_bits(b64: str) -> int:
    from joserfc.util import urlsafe_b64decode

    return int.from_bytes(urlsafe_b64decode(b64.encode("ascii")), "big").bit_length()


def _check_key(index: int, key: Any) -> str:
    """Check one JWK; returns its kid. Raises ValidationError naming the key (never echoing it)."""
    where = f"Key {index + 1}"
    if not isinstance(key, dict):
        raise ValidationError(f"{where} is not a JSON object.")
    private = sorted(PRIVATE_MEMBERS & set(key))
    if private:
        raise ValidationError(
            f"{where} contains private key material ({', '.join(private)}). Upload the public keys only."
        )
    kty = key.get("kty")
    if kty not in ALGORITHM_FOR_KTY:
        raise ValidationError(f"{where}: key type must be RSA or EC (P-384), not {str(kty)[:10]!r}.")
    kid = key.get("kid")
    if not isinstance(kid, str) or not kid.strip() or len(kid) > 200:
        raise ValidationError(f"{where} needs a kid (key id, up to 200 characters).")
    use = key.get("use", "sig")
    if use not in ("sig", "enc"):
        raise ValidationError(f"{where}: use must be sig or enc.")
    expected = (ALGORITHM_FOR_KTY if use == "sig" else ENCRYPTION_ALGORITHM_FOR_KTY)[kty]
    alg = key.get("alg")
    if alg is not None and alg != expected:
        raise ValidationError(f"{where}: alg must be {expected} for a {kty} key of use {use}.")
    try:
        if kty == "RSA":
            if not isinstance(key.get("n"), str) or _int_bits(key["n"]) < MIN_RSA_BITS:
                raise ValidationError(f"{where}: RSA keys must have at least {MIN_RSA_BITS} bits.")
            import_key(key, "RSA")
        else:
            if key.get("crv") != EC_CURVE:
                raise ValidationError(f"{where}: EC keys must be on curve {EC_CURVE}.")
            import_key(key, "EC")
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise ValidationError(f"{where} is not a valid {kty} public key.") from exc
    return kid


def validate_jwks(value: Any) -> None:
    """Validator of ``Partner.jwks``: a JWKS of public RSA/EC P-384 keys (signing or encryption) with
    unique kids."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValidationError("The JWKS is not valid JSON.") from exc
    if not isinstance(value, dict) or not isinstance(value.get("keys"), list):
        raise ValidationError('A JWKS is a JSON object with a "keys" list.')
    keys = value["keys"]
    if not keys:
        raise ValidationError("The JWKS has no keys.")
    if len(keys) > MAX_KEYS:
        raise ValidationError(f"At most {MAX_KEYS} keys.")
    kids = [_check_key(index, key) for index, key in enumerate(keys)]
    if len(set(kids)) != len(kids):
        raise ValidationError("Each key needs its own kid.")


def key_for(jwks: Any, kid: str, alg: str) -> RSAKey | ECKey | None:
    """The partner's public key named ``kid`` that verifies ``alg``, or None.

    Checks the stored JWKS again (fail closed: a row written behind the admin's back is not trusted)."""
    try:
        validate_jwks(jwks)
    except ValidationError:
        return None
    for key in jwks["keys"]:
        if key.get("use", "sig") != "sig":
            continue
        if key.get("kid") == kid and ALGORITHM_FOR_KTY.get(key.get("kty")) == alg:
            imported = KeySet.import_key_set({"keys": [key]}).keys[0]
            if isinstance(imported, RSAKey | ECKey):
                return imported
    return None


def encryption_key(jwks: Any) -> tuple[RSAKey | ECKey, str] | None:
    """The partner's first key of use ``enc`` and the algorithm it is used with, or None.

    Checks the stored JWKS again, like ``key_for``."""
    try:
        validate_jwks(jwks)
    except ValidationError:
        return None
    for key in jwks["keys"]:
        if key.get("use") == "enc":
            imported = KeySet.import_key_set({"keys": [key]}).keys[0]
            if isinstance(imported, RSAKey | ECKey):
                return imported, ENCRYPTION_ALGORITHM_FOR_KTY[key["kty"]]
    return None


def signing_kids(jwks: Any) -> set[str]:
    """The kids of the partner's signing keys (without checking the JWKS: ``key_for`` does that)."""
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list):
        return set()
    return {
        key["kid"]
        for key in keys
        if isinstance(key, dict) and isinstance(key.get("kid"), str) and key.get("use", "sig") == "sig"
    }


def thumbprints(jwks: Any) -> set[str]:
    """The RFC 7638 thumbprints of the JWKS's keys (whatever their use); none for a JWKS that is not valid."""
    try:
        validate_jwks(jwks)
        value = jwks if isinstance(jwks, dict) else json.loads(jwks)
        keys = KeySet.import_key_set(cast(Any, value)).keys
    except (ValidationError, ValueError, TypeError):
        return set()
    return {key.thumbprint() for key in keys}
