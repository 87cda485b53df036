"""The hospital's own JOSE key pairs (DESIGN.md §5, §9): one kind signs the packages we send, the
other decrypts the packages partners send us.

Both live with the other keys, outside the database: a JWKS (RFC 7517) holding the private keys, from
the file named by ``HOSPITAL_JWKS_FILE`` or the JSON in ``HOSPITAL_JWKS`` (never both). Each key has a
``kid`` and a ``use``:

- ``sig``: EC P-384, ES384. The first listed signs; every listed one still verifies.
- ``enc``: EC P-384, ECDH-ES+A256KW (content A256GCM). The first listed is the one we publish first
  (partners encrypt to it); every listed one still decrypts.

Rotation without downtime is the field keyring's rule (first one in use, all accepted):
``manage.py generate_hospital_keys --rotate --out FILE`` puts a new pair in front and keeps the old ones,
and the file is re-read when it changes (its size and modification time), so workers pick the new key
up without a restart. Why ES384 rather than RS384: the partner registry already takes P-384 keys (for
SMART assertions), signatures and keys are small (96-byte signatures against 384 for RSA-3072), key
generation is instant (rotation is cheap), and one curve serves both signing and key agreement.

Errors name the variable or the key id, never key material.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

SIGNING_ALGORITHM = "ES384"
KEY_ALGORITHM = "ECDH-ES+A256KW"
CONTENT_ALGORITHM = "A256GCM"
CURVE = "P-384"
ALGORITHM_FOR_USE = {"sig": SIGNING_ALGORITHM, "enc": KEY_ALGORITHM}
# Members only a private key has (RFC 7518 §6.2.2, §6.3.2); never published.
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
MAX_KEYS = 20


class HospitalKeysUnavailable(Exception):
    """The hospital's keys are missing or unusable. The message names the setting, never a key."""


@dataclass(frozen=True)
class HospitalKeys:
    """The loaded key set: ``signing[0]`` signs, ``decryption[0]`` is the one partners should use."""

    signing: tuple[ECKey, ...]
    decryption: tuple[ECKey, ...]

    @property
    def signer(self) -> ECKey:
        return self.signing[0]

    def signing_key(self, kid: str) -> ECKey | None:
        return next((key for key in self.signing if key.kid == kid), None)

    def decryption_key(self, kid: str) -> ECKey | None:
        return next((key for key in self.decryption if key.kid == kid), None)

    def public_jwks(self) -> dict[str, Any]:
        """The public halves only, in order (current first): what ``/.well-known/jwks.json`` publishes."""
        keys = []
        for key in (*self.signing, *self.decryption):
            public = {name: value for name, value in key.as_dict(private=False).items() if name not in PRIVATE_MEMBERS}
            keys.append(public)
        return {"keys": keys}


def new_key_pair(prefix: str | None = None) -> list[dict[str, Any]]:
    """A fresh signing key and a fresh encryption key (private JWK dicts), kids dated and unique."""
    stamp = prefix or datetime.now(tz=UTC).strftime("%Y%m%d")
    suffix = uuid.uuid4().hex[:8]
    return [
        dict(
            ECKey.generate_key(CURVE, {"kid": f"{stamp}-{use}-{suffix}", "use": use, "alg": alg}, private=True).as_dict(
                private=True
            )
        )
        for use, alg in ALGORITHM_FOR_USE.items()
    ]


def parse_jwks(text: str, *, source: str) -> HospitalKeys:
    """Check and load a private JWKS. Raises HospitalKeysUnavailable naming ``source`` and the key index."""
    try:
        data = json.loads(text)
    except ValueError:
        raise HospitalKeysUnavailable(f"{source} is not valid JSON.") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list) or not data["keys"]:
        raise HospitalKeysUnavailable(f'{source} must be a JWKS: a JSON object with a non-empty "keys" list.')
    if len(data["keys"]) > MAX_KEYS:
        raise HospitalKeysUnavailable(f"{source} holds more than {MAX_KEYS} keys.")
    loaded: dict[str, list[ECKey]] = {"sig": [], "enc": []}
    kids: set[str] = set()
    for index, member in enumerate(data["keys"]):
        where = f"{source}, key {index + 1}"
        if not isinstance(member, dict):
            raise HospitalKeysUnavailable(f"{where} is not a JSON object.")
        use, kid = member.get("use"), member.get("kid")
        if use not in ALGORITHM_FOR_USE:
            raise HospitalKeysUnavailable(f'{where}: "use" must be "sig" or "enc".')
        if not isinstance(kid, str) or not kid or len(kid) > 200 or kid in kids:
            raise HospitalKeysUnavailable(f"{where} needs its own kid (up to 200 characters).")
        if member.get("kty") != "EC" or member.get("crv") != CURVE or member.get("alg") != ALGORITHM_FOR_USE[use]:
            raise HospitalKeysUnavailable(f"{where} must be an EC {CURVE} key with alg {ALGORITHM_FOR_USE[use]}.")
        if "d" not in member:
            raise HospitalKeysUnavailable(f"{where} has no private part (d).")
        try:
            key = ECKey.import_key(member)
        except (JoseError, ValueError, TypeError, KeyError):
            raise HospitalKeysUnavailable(f"{where} is not a valid EC private key.") from None
        kids.add(kid)
        loaded[use].append(key)
    if not loaded["sig"] or not loaded["enc"]:
        raise HospitalKeysUnavailable(f"{source} needs at least one signing (sig) and one encryption (enc) key.")
    return HospitalKeys(signing=tuple(loaded["sig"]), decryption=tuple(loaded["enc"]))


_cache: dict[tuple[Any, ...], HospitalKeys] = {}


def hospital_keys() -> HospitalKeys:
    """The hospital's keys from ``HOSPITAL_JWKS`` or ``HOSPITAL_JWKS_FILE``; fails closed.

    A file is re-read when its size or modification time changes (a rotation is picked up)."""
    inline = str(getattr(settings, "HOSPITAL_JWKS", "") or "")
    file_name = str(getattr(settings, "HOSPITAL_JWKS_FILE", "") or "")
    if inline and file_name:
        raise HospitalKeysUnavailable("Set either HOSPITAL_JWKS or HOSPITAL_JWKS_FILE, not both.")
    if inline:
        cache_key: tuple[Any, ...] = ("inline", inline)
        if cache_key not in _cache:
            _cache.clear()
            _cache[cache_key] = parse_jwks(inline, source="HOSPITAL_JWKS")
        return _cache[cache_key]
    if not file_name:
        raise HospitalKeysUnavailable("The hospital's keys are not configured: set HOSPITAL_JWKS_FILE.")
    path = Path(file_name)
    try:
        stat = path.stat()
        cache_key = ("file", str(path), stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if cache_key not in _cache:
            text = path.read_text(encoding="utf-8")
            _cache.clear()
            _cache[cache_key] = parse_jwks(text, source="HOSPITAL_JWKS_FILE")
    except OSError as error:
        raise HospitalKeysUnavailable(f"HOSPITAL_JWKS_FILE cannot be read ({error.strerror}).") from None
    return _cache[cache_key]


def write_jwks(path: Path, keys: list[dict[str, Any]], *, replace: bool) -> None:
    """Write a private JWKS with mode 0600: a new file (refusing an existing one), or, with ``replace``,
    atomically over the old one (a temporary file beside it, then a rename)."""
    text = json.dumps({"keys": keys}, indent=2) + "\n"
    if not replace:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        return
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
