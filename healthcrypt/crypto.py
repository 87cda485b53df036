"""Keyring, authenticated encryption and blind indexes on PyCA ``cryptography``.

This is the one place that touches key material (docs/decisions/0002-field-encryption.md). It
lives in the project package rather than in ``records`` because ``accounts`` needs it too (TOTP
secrets are credentials and are encrypted at rest) and the app arrows point ``records -> accounts``.

Token format: ``hc2:<kid>:<base64url(nonce || ciphertext || tag)>``, AES-256-GCM with a random
96-bit nonce. The associated data ``hc2:<kid>:<context>:<row>`` binds the token to its key id, to a
*context* (for fields, ``app_label.Model.field``) and to a *row* (the row's ``row_uid``), so a
ciphertext copied into another column, or into the same column of another row, does not decrypt
(docs/decisions/0007-row-bound-ciphertext.md).

The earlier ``hc1`` tokens had ``hc1:<kid>:<context>`` as associated data: bound to their column
only. They are opened only when the caller says so (``accept_column_bound``): the field layer does
while ``FIELD_ENCRYPTION_ACCEPT_COLUMN_BOUND`` is on, and ``rotate_keys`` always does, to move them
to ``hc2``. Nothing writes ``hc1`` any more.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import unicodedata
import uuid
from base64 import b64decode, urlsafe_b64encode
from binascii import Error as BinasciiError
from binascii import a2b_base64
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

COLUMN_BOUND_VERSION = "hc1"
ROW_BOUND_VERSION = "hc2"
# The version every new token is written in.
CIPHERTEXT_VERSION = ROW_BOUND_VERSION
KEY_BYTES = 32
NONCE_BYTES = 12
_KID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class DecryptionError(Exception):
    """A value could not be decrypted: wrong or missing key, or altered data.

    The message names the key id and the context, never the token or any plaintext.
    """


class ColumnBoundRefused(DecryptionError):
    """An ``hc1`` token (bound to its column, not its row) where only row-bound tokens are accepted."""


def row_identity(value: object) -> str:
    """The canonical text of a row identity (a UUID, or its hex / hyphenated text) for the AAD.

    SQLite hands a UUID column back as 32 hex digits and PostgreSQL as a ``uuid.UUID``: both must
    give the same associated data.
    """
    if isinstance(value, uuid.UUID):
        return str(value)
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise DecryptionError("Row identity is not a UUID.") from None


def decode_key(value: str, *, name: str) -> bytes:
    """Decode a base64url key of exactly 32 bytes; ``name`` is used in the error message only."""
    text = value.strip()
    try:
        raw = b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (BinasciiError, ValueError):
        raise ImproperlyConfigured(f"{name} is not valid base64url.") from None
    if len(raw) != KEY_BYTES:
        raise ImproperlyConfigured(f"{name} must decode to {KEY_BYTES} bytes, not {len(raw)}.")
    return raw


def generate_key() -> str:
    """Return a new random 256-bit key, base64url-encoded."""
    return urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


@dataclass(frozen=True)
class Keyring:
    """An ordered set of named keys: the first encrypts, every one of them decrypts."""

    keys: tuple[tuple[str, bytes], ...]
    # One AESGCM object per key, built once: constructing it per value doubled the cost.
    _ciphers: dict[str, AESGCM] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ciphers", {kid: AESGCM(key) for kid, key in self.keys})

    @classmethod
    def parse(cls, spec: str, *, name: str = "FIELD_ENCRYPTION_KEYS") -> Keyring:
        """Parse ``"kid:key,kid:key"``; raise ImproperlyConfigured naming ``name`` on any defect."""
        entries: list[tuple[str, bytes]] = []
        for position, item in enumerate(part.strip() for part in spec.split(",") if part.strip()):
            kid, sep, encoded = item.partition(":")
            if not sep or not _KID_RE.match(kid):
                raise ImproperlyConfigured(
                    f"{name} entry {position + 1} must look like 'kid:base64key' with a kid of "
                    "letters, digits, '-' or '_' (at most 32)."
                )
            if any(kid == seen for seen, _ in entries):
                raise ImproperlyConfigured(f"{name} names key id '{kid}' twice.")
            entries.append((kid, decode_key(encoded, name=f"{name} key '{kid}'")))
        if not entries:
            raise ImproperlyConfigured(f"{name} holds no key.")
        return cls(tuple(entries))

    @property
    def current_kid(self) -> str:
        """The id of the key that encrypts new values."""
        return self.keys[0][0]

    @property
    def kids(self) -> tuple[str, ...]:
        """Every key id, the current one first."""
        return tuple(kid for kid, _ in self.keys)

    def derive_cipher(self, kid: str, *, salt: bytes, info: bytes) -> AESGCM:
        """AES-GCM under a key derived from key ``kid`` with HKDF-SHA256 (RFC 5869), for records/files.py.

        Formats that seal many chunks with counter-based nonces need a nonce space of their own: a
        fresh random 32-byte ``salt`` per file gives each file its own key, so nonces only have to
        be unique within one file, not across every file ever sealed under ``kid``. ``info``
        separates purposes. Only the cipher leaves this module, never key bytes. Raise
        DecryptionError, naming only the key id, when the ring has no such key.
        """
        key = dict(self.keys).get(kid)
        if key is None:
            raise DecryptionError(f"No key with id '{kid}' in the keyring.")
        derived = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=info).derive(key)
        return AESGCM(derived)

    def encrypt(self, plaintext: bytes, *, context: str, row: str) -> str:
        """Encrypt under the current key, bound to ``context`` and ``row``; every call uses a fresh nonce."""
        kid = self.keys[0][0]
        nonce = secrets.token_bytes(NONCE_BYTES)
        aad = f"{ROW_BOUND_VERSION}:{kid}:{context}:{row}".encode()
        sealed = self._ciphers[kid].encrypt(nonce, plaintext, aad)
        return f"{ROW_BOUND_VERSION}:{kid}:{urlsafe_b64encode(nonce + sealed).decode('ascii')}"

    def decrypt(self, token: str, *, context: str, row: str | None, accept_column_bound: bool = False) -> bytes:
        """Decrypt a token made by :meth:`encrypt` for ``context`` and ``row``; raise DecryptionError on any failure.

        An ``hc1`` token is opened with its old, column-only associated data when
        ``accept_column_bound`` is true, and refused with ColumnBoundRefused otherwise.
        """
        parts = token.split(":", 2)
        if len(parts) != 3:
            raise DecryptionError("Value is not a Healthcrypt ciphertext.")
        version, kid, body = parts  # one split, not token_header's and then another (issue 11)
        if version == ROW_BOUND_VERSION:
            if row is None:
                raise DecryptionError(f"Value of {context} is row-bound but its row identity is unknown.")
            aad = f"{ROW_BOUND_VERSION}:{kid}:{context}:{row}".encode()
        elif version == COLUMN_BOUND_VERSION:
            if not accept_column_bound:
                # A copied legacy token would decrypt in any row: refuse it unless an operator
                # has allowed the old format for the time of the migration (rotate_keys).
                raise ColumnBoundRefused(
                    f"Value of {context} is column-bound (hc1) and FIELD_ENCRYPTION_ACCEPT_COLUMN_BOUND is off; "
                    "run rotate_keys to bind it to its row."
                )
            aad = f"{COLUMN_BOUND_VERSION}:{kid}:{context}".encode()
        else:
            raise DecryptionError(f"Unsupported ciphertext version for {context}.")
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise DecryptionError(f"No key with id '{kid}' in the keyring (value of {context}).")
        try:
            # What urlsafe_b64decode does (non-strict), without its three layers of Python per value.
            raw = a2b_base64(body.translate(_FROM_URLSAFE) + "=" * (-len(body) % 4))
            return cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad)
        except (InvalidTag, BinasciiError, ValueError):
            raise DecryptionError(f"Value of {context} failed authentication under key '{kid}'.") from None


_FROM_URLSAFE = str.maketrans("-_", "+/")


def token_header(token: str) -> tuple[str, str]:
    """Return ``(version, kid)`` of a token without decrypting it (used to report key usage)."""
    parts = token.split(":", 2)
    if len(parts) != 3:
        raise DecryptionError("Value is not a Healthcrypt ciphertext.")
    return parts[0], parts[1]


@lru_cache(maxsize=1)
def field_keyring() -> Keyring:
    """The keyring for encrypted fields and files, from ``settings.FIELD_ENCRYPTION_KEYS``."""
    return Keyring.parse(settings.FIELD_ENCRYPTION_KEYS)


@lru_cache(maxsize=4)
def _hmac_key(setting_name: str) -> bytes:
    return decode_key(getattr(settings, setting_name), name=setting_name)


def normalise(value: str) -> str:
    """Normalise text for exact matching: Unicode NFKC, case-folded, inner white space collapsed."""
    return " ".join(unicodedata.normalize("NFKC", value).casefold().split())


def blind_index(value: str, *, purpose: str) -> str:
    """HMAC-SHA256 of the normalised value under BLIND_INDEX_KEY, hex-encoded.

    ``purpose`` separates index spaces, so an MRN and a surname with the same text never collide.
    """
    message = f"{purpose}\x00{normalise(value)}".encode()
    return hmac.new(_hmac_key("BLIND_INDEX_KEY"), message, hashlib.sha256).hexdigest()


@receiver(setting_changed)
def _reset_caches(*, setting: str, **kwargs: Any) -> None:
    # Tests swap keys with override_settings; cached keys must follow.
    if setting in {"FIELD_ENCRYPTION_KEYS", "BLIND_INDEX_KEY", "AUDIT_HMAC_KEY"}:
        field_keyring.cache_clear()
        _hmac_key.cache_clear()
