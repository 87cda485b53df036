"""Writing and deleting stored files, and reading a file's key id from its header."""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
import uuid
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from healthcrypt.crypto import field_keyring
from records.files.format import (
    _TEMP_PREFIX,
    CHUNK_BYTES,
    FORMAT_VERSION,
    HKDF_INFO,
    MAX_CHUNKS,
    NONCE_PREFIX_BYTES,
    SALT_BYTES,
    _build_header,
    _nonce_and_aad,
    _path,
    _read_full,
    _read_header,
    _row_bytes,
    attachments_dir,
)


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
