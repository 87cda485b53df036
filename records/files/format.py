"""The file format of records/files/__init__.py: constants, the header, the per-file cipher, and where files live."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

from healthcrypt.crypto import DecryptionError, field_keyring

MAGIC = b"HCF1"
FORMAT_VERSION = 2
# Bound to the storage name only; readable while FIELD_ENCRYPTION_ACCEPT_COLUMN_BOUND is on.
UNBOUND_FORMAT_VERSION = 1
CHUNK_BYTES = 64 * 1024
TAG_BYTES = 16
SALT_BYTES = 32
NONCE_PREFIX_BYTES = 7
SEALED_CHUNK_BYTES = CHUNK_BYTES + TAG_BYTES
# The chunk index is 4 bytes of the nonce: at most 2**32 chunks (256 TiB) per file.
MAX_CHUNKS = 2**32
HKDF_INFO = {UNBOUND_FORMAT_VERSION: b"healthcrypt file v1", FORMAT_VERSION: b"healthcrypt file v2"}
ATTACHMENTS_DIR = "attachments"
_TEMP_PREFIX = ".tmp-"
_STORAGE_NAME_RE = re.compile(r"^[0-9a-f]{32}$")
_KID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


@dataclass(frozen=True)
class _Header:
    raw: bytes
    kid: str
    salt: bytes
    prefix: bytes
    version: int = FORMAT_VERSION


def attachments_dir() -> Path:
    """The directory that holds every encrypted attachment file."""
    return Path(settings.MEDIA_ROOT) / ATTACHMENTS_DIR


def _path(storage_name: str) -> Path:
    # The name is joined to a directory: anything but 32 hex digits could climb out of it.
    if not _STORAGE_NAME_RE.match(storage_name):
        raise ValueError("Not a storage name.")
    return attachments_dir() / storage_name


def _build_header(kid: str, salt: bytes, prefix: bytes) -> _Header:
    encoded = kid.encode("ascii")
    raw = MAGIC + bytes((FORMAT_VERSION, len(encoded))) + encoded + salt + prefix
    return _Header(raw=raw, kid=kid, salt=salt, prefix=prefix)


def _row_bytes(row_uid: uuid.UUID | str) -> bytes:
    return (row_uid if isinstance(row_uid, uuid.UUID) else uuid.UUID(str(row_uid))).bytes


def _accept_unbound() -> bool:
    return bool(getattr(settings, "FIELD_ENCRYPTION_ACCEPT_COLUMN_BOUND", False))


def _read_header(handle: BinaryIO, storage_name: str) -> _Header:
    unknown = DecryptionError(f"Stored file {storage_name} is not in a known format.")
    fixed = handle.read(len(MAGIC) + 2)
    if len(fixed) != len(MAGIC) + 2 or fixed[: len(MAGIC)] != MAGIC:
        raise unknown
    version = fixed[len(MAGIC)]
    if version not in (FORMAT_VERSION, UNBOUND_FORMAT_VERSION):
        raise unknown
    kid_length = fixed[len(MAGIC) + 1]
    rest = handle.read(kid_length + SALT_BYTES + NONCE_PREFIX_BYTES)
    if len(rest) != kid_length + SALT_BYTES + NONCE_PREFIX_BYTES:
        raise unknown
    try:
        kid = rest[:kid_length].decode("ascii")
    except UnicodeDecodeError:
        raise unknown from None
    if not _KID_RE.match(kid):
        raise unknown
    salt = rest[kid_length : kid_length + SALT_BYTES]
    return _Header(raw=fixed + rest, kid=kid, salt=salt, prefix=rest[kid_length + SALT_BYTES :], version=version)


def _file_cipher(header: _Header, storage_name: str) -> AESGCM:
    try:
        return field_keyring().derive_cipher(header.kid, salt=header.salt, info=HKDF_INFO[header.version])
    except DecryptionError:
        raise DecryptionError(
            f"Stored file {storage_name} is under key '{header.kid}', which is not in the keyring."
        ) from None


def _nonce_and_aad(header: _Header, binding: bytes, index: int, final: bool) -> tuple[bytes, bytes]:
    """``binding`` is the storage name (ASCII), followed in version 2 by the 16 bytes of the row uid."""
    position = index.to_bytes(4, "big") + (b"\x01" if final else b"\x00")
    return header.prefix + position, header.raw + binding + position


def _read_full(source: IO[bytes], size: int) -> bytes:
    """Read ``size`` bytes, or fewer only at the end of the stream (reads may return short)."""
    data = source.read(size)
    if not data or len(data) == size:
        return data or b""
    parts = [data]
    missing = size - len(data)
    while missing:
        more = source.read(missing)
        if not more:
            break
        parts.append(more)
        missing -= len(more)
    return b"".join(parts)
