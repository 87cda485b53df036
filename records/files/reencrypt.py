"""Copying a stored file under the current key, bound to its row, verified before the old one may go (rotate_keys)."""

from __future__ import annotations

import hashlib
import logging
import sys
import uuid
from collections.abc import Iterable
from typing import IO, cast

from healthcrypt.crypto import DecryptionError
from records.files.storage import StoredFile, delete_stored, store_encrypted
from records.files.streaming import open_decrypted

logger = logging.getLogger(__name__)


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
