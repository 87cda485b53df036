"""Encrypted attachment files on disk, streamed in chunks so memory stays flat at any file size.

Files live under ``settings.MEDIA_ROOT / "attachments"`` with a random 32-hex-digit name (the
``Attachment.storage_name``) and are sealed under the field keyring (healthcrypt/crypto.py), so one
``FIELD_ENCRYPTION_KEYS`` rotation covers values and files alike (``manage.py rotate_keys``).

Format, version 2 (all integers big-endian)::

    header  = b"HCF1" | version (1 byte: 2) | len(kid) (1 byte) | kid (ASCII)
              | salt (32 random bytes) | nonce prefix (7 random bytes)
    body    = sealed chunk 0 | sealed chunk 1 | ... | sealed chunk n-1     (n >= 1)
    chunk i = AES-256-GCM(file key, nonce_i, plaintext_i, aad_i): ciphertext | 16-byte tag
    file key = HKDF-SHA256(key kid, salt, info=b"healthcrypt file v2")
    nonce_i = nonce prefix (7) | i (4 bytes) | final (1 byte: 1 on the last chunk, else 0)
    aad_i   = header | storage name (ASCII) | row uid (16 bytes) | i (4 bytes) | final (1 byte)

Version 1 was the same without the row uid (and with info ``b"healthcrypt file v1"``): bound to its
storage name, not to the ``Attachment`` row that points at it. Such files are opened only while
``FIELD_ENCRYPTION_ACCEPT_COLUMN_BOUND`` is on, and ``rotate_keys`` rewrites them as version 2.

Every chunk holds exactly 64 KiB of plaintext except the last, which holds 0 to 64 KiB (an empty
file is a single empty final chunk), so a reader knows a chunk is the last one when it is short or
when the file ends right after it. This is the STREAM construction of Hoang, Reyhanitabar, Rogaway
and Vizár (2015), as used by Tink's streaming AEAD, and each part is there for a reason:

- Each file gets its own key, derived from a random salt, so the short counter nonces never repeat
  under one key however many files are stored, and no key is used for more than one file.
- The chunk index is in the nonce and the associated data: a reordered, dropped or duplicated chunk
  is opened at the wrong index and fails authentication.
- The final flag is too: cutting the file at a chunk boundary makes a non-final chunk be opened as
  the last one, and appending anything makes the real last chunk be opened as non-final; both fail.
  A header with no chunk at all fails as well.
- The whole header is in the associated data, so changing the version, key id, salt or prefix
  fails; and so is the storage name, so a file copied over another attachment's file does not
  decrypt (the same idea as the column context of field tokens).
- The row uid of the attachment (``Attachment.row_uid``) is too, so pointing one attachment row at
  another's file (swapping ``storage_name`` in the database) fails on the first chunk, which is
  checked when the file is opened, before a byte is handed out (the same idea as the row binding
  of field tokens, docs/decisions/0007-row-bound-ciphertext.md).

Plaintext is released one verified chunk at a time. A stream that was cut short is only detected
when the reader reaches the end, so a consumer must treat DecryptionError part-way through as an
aborted transfer (downloads also check the SHA-256 recorded on the row).

Writes go to a temporary file in the same directory (mode 0600), are flushed to disk and then
renamed into place, so a crash never leaves a half-written file under a storage name.

Errors never carry file content: DecryptionError names the storage name and the key id only, and
FileTooLarge names the limit.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import sys
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from types import TracebackType
from typing import IO, BinaryIO, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

from healthcrypt.crypto import DecryptionError, field_keyring

logger = logging.getLogger(__name__)

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


class FileTooLarge(Exception):
    """More bytes arrived than the caller allowed; nothing was kept."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"The file is larger than the limit of {limit} bytes.")
        self.limit = limit


@dataclass(frozen=True)
class StoredFile:
    """Where an encrypted file was stored, under which key, and what its plaintext was."""

    storage_name: str
    key_id: str
    sha256: str
    size: int


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


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory, hence best effort.
    with suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def store_encrypted(source: IO[bytes], *, max_bytes: int, row_uid: uuid.UUID | str) -> StoredFile:
    """Encrypt ``source`` under the current key into a new attachment file, 64 KiB at a time.

    The file is bound to its storage name and to ``row_uid``, the ``row_uid`` of the Attachment
    row that will point at it (create the row with that value).

    Never holds more than two chunks of the upload in memory. Raise FileTooLarge, leaving no file
    behind, as soon as more than ``max_bytes`` bytes have arrived; any other failure also removes
    the partial file.
    """
    if max_bytes < 0:
        raise ValueError("max_bytes must not be negative.")
    keyring = field_keyring()
    storage_name = secrets.token_hex(16)
    header = _build_header(
        keyring.current_kid, secrets.token_bytes(SALT_BYTES), secrets.token_bytes(NONCE_PREFIX_BYTES)
    )
    cipher = keyring.derive_cipher(header.kid, salt=header.salt, info=HKDF_INFO[FORMAT_VERSION])
    binding = storage_name.encode("ascii") + _row_bytes(row_uid)

    directory = attachments_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mkstemp creates the file with mode 0600 and a name no storage name can take.
    fd, temp_name = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=directory)
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(header.raw)
            index = 0
            chunk = _read_full(source, CHUNK_BYTES)
            while True:
                size += len(chunk)
                if size > max_bytes:
                    raise FileTooLarge(max_bytes)
                if index >= MAX_CHUNKS:
                    raise FileTooLarge(MAX_CHUNKS * CHUNK_BYTES)
                digest.update(chunk)
                # Only a full chunk can have a successor; reading one ahead tells us if this is the last.
                following = _read_full(source, CHUNK_BYTES) if len(chunk) == CHUNK_BYTES else b""
                final = not following
                nonce, aad = _nonce_and_aad(header, binding, index, final)
                out.write(cipher.encrypt(nonce, chunk, aad))
                if final:
                    break
                chunk = following
                index += 1
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp_name, directory / storage_name)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    _fsync_directory(directory)
    return StoredFile(storage_name=storage_name, key_id=header.kid, sha256=digest.hexdigest(), size=size)


class DecryptedFile(Iterator[bytes]):
    """The plaintext of a stored file, as verified chunks; close it (or use ``with``) when done.

    The header is read, the key looked up and the first chunk verified on opening, so a missing
    key, an unknown format, or a file that belongs to another row fails before the first byte is
    handed out (a response has not started yet). Django's streaming responses call ``close()``.
    """

    def __init__(self, storage_name: str, *, row_uid: uuid.UUID | str, accept_unbound: bool | None = None) -> None:
        self.storage_name = storage_name
        self._handle: BinaryIO = open(_path(storage_name), "rb")  # noqa: SIM115 - closed by close()
        try:
            self._header = _read_header(self._handle, storage_name)
            if self._header.version == UNBOUND_FORMAT_VERSION:
                if not (_accept_unbound() if accept_unbound is None else accept_unbound):
                    raise DecryptionError(
                        f"Stored file {storage_name} is bound to its storage name only (format 1) and "
                        "FIELD_ENCRYPTION_ACCEPT_COLUMN_BOUND is off; run rotate_keys to bind it to its row."
                    )
                self._binding = storage_name.encode("ascii")
            else:
                self._binding = storage_name.encode("ascii") + _row_bytes(row_uid)
            self._cipher = _file_cipher(self._header, storage_name)
            self._chunks = self._decrypt_chunks()
            # Verify the first chunk now: a file of another row is refused before anything is sent.
            self._pending = list(islice(self._chunks, 1))
        except BaseException:
            self._handle.close()
            raise

    @property
    def key_id(self) -> str:
        """The id of the key the file is sealed under."""
        return self._header.kid

    @property
    def format_version(self) -> int:
        """2 for a file bound to its row, 1 for one bound to its storage name only."""
        return self._header.version

    def _failed(self) -> DecryptionError:
        return DecryptionError(
            f"Stored file {self.storage_name} failed authentication under key '{self._header.kid}' "
            "(altered, truncated or extended, or not the file of this attachment row)."
        )

    def _decrypt_chunks(self) -> Iterator[bytes]:
        index = 0
        sealed = _read_full(self._handle, SEALED_CHUNK_BYTES)
        while True:
            if index >= MAX_CHUNKS:
                raise self._failed()
            # A full-size chunk is the last one only if the file ends right after it.
            following = _read_full(self._handle, SEALED_CHUNK_BYTES) if len(sealed) == SEALED_CHUNK_BYTES else b""
            final = not following
            nonce, aad = _nonce_and_aad(self._header, self._binding, index, final)
            try:
                plaintext = self._cipher.decrypt(nonce, sealed, aad)
            except InvalidTag:
                raise self._failed() from None
            if plaintext:
                yield plaintext
            if final:
                return
            sealed = following
            index += 1

    def __next__(self) -> bytes:
        if self._pending:
            return self._pending.pop()
        try:
            return next(self._chunks)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the file handle; safe to call more than once."""
        self._chunks.close()
        self._handle.close()

    def __enter__(self) -> DecryptedFile:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def open_decrypted(storage_name: str, *, row_uid: uuid.UUID | str, accept_unbound: bool | None = None) -> DecryptedFile:
    """Open the stored file of the attachment row ``row_uid``: iterate it for verified plaintext chunks.

    Raise DecryptionError (naming the storage name and key id only) for an unknown format, a key
    that is not in the ring, or a file that is not this row's, at once, and for altered, reordered,
    truncated or extended content, when the bad chunk is reached. Raise FileNotFoundError if there
    is no such file. A version 1 file (not row-bound) is refused unless ``accept_unbound``, which
    defaults to FIELD_ENCRYPTION_ACCEPT_COLUMN_BOUND.
    """
    return DecryptedFile(storage_name, row_uid=row_uid, accept_unbound=accept_unbound)


def file_header(storage_name: str) -> tuple[str, int]:
    """``(key id, format version)`` of a stored file, read from its header without decrypting."""
    with open(_path(storage_name), "rb") as handle:
        header = _read_header(handle, storage_name)
    return header.kid, header.version


def file_key_id(storage_name: str) -> str:
    """The id of the key a stored file is sealed under, read from its header without decrypting."""
    return file_header(storage_name)[0]


def delete_stored(storage_name: str) -> None:
    """Delete a stored file; deleting one that is already gone is not an error (re-runs repeat it)."""
    path = _path(storage_name)
    path.unlink(missing_ok=True)
    _fsync_directory(path.parent)


class _ChunkReader:
    """The ``read(size)`` that store_encrypted needs, over an iterator of byte chunks."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = b""

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            return b"".join([self._pending, *self._chunks])
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return b""
        # Aligned chunks (the usual case) are handed over whole: slicing all of a bytes object is free.
        data, self._pending = self._pending[:size], self._pending[size:]
        return data


def _plaintext_sha256(storage_name: str, row_uid: uuid.UUID | str) -> str:
    digest = hashlib.sha256()
    with open_decrypted(storage_name, row_uid=row_uid) as chunks:
        for chunk in chunks:
            digest.update(chunk)
    return digest.hexdigest()


def reencrypt_file(storage_name: str, *, row_uid: uuid.UUID | str, expected_sha256: str | None = None) -> StoredFile:
    """Copy a stored file under the current key, bound to ``row_uid``, into a NEW storage name, and verify it.

    A version 1 file (bound to its storage name only) is read whatever the setting says: this is
    how rotate_keys moves it to the row-bound format.

    The old file is left untouched: the caller points the row at the new name and only then deletes
    the old file, so a crash at any step leaves a readable file behind. The new file is read back
    and its plaintext SHA-256 must equal the old one's (and ``expected_sha256``, the digest recorded
    on the row, when given); otherwise the new file is deleted and DecryptionError is raised.
    """
    with open_decrypted(storage_name, row_uid=row_uid, accept_unbound=True) as old:
        old_kid = old.key_id
        stored = store_encrypted(cast(IO[bytes], _ChunkReader(old)), max_bytes=sys.maxsize, row_uid=row_uid)
    try:
        if expected_sha256 is not None and stored.sha256 != expected_sha256.lower():
            raise DecryptionError(
                f"Stored file {storage_name} (key '{old_kid}') does not match the digest recorded for it."
            )
        if _plaintext_sha256(stored.storage_name, row_uid) != stored.sha256:
            raise DecryptionError(
                f"Re-encrypted copy of stored file {storage_name} (key '{old_kid}') did not read back identically."
            )
    except BaseException:
        delete_stored(stored.storage_name)
        raise
    logger.debug(
        "Re-encrypted stored file %s (key %s) as %s (key %s).",
        storage_name,
        old_kid,
        stored.storage_name,
        stored.key_id,
    )
    return stored
