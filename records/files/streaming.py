"""Reading a stored file back: verified plaintext chunks, one at a time."""

from __future__ import annotations

import uuid
from collections.abc import Generator, Iterator
from itertools import islice
from types import TracebackType
from typing import BinaryIO

from cryptography.exceptions import InvalidTag

from healthcrypt.crypto import DecryptionError
from records.files.format import (
    MAX_CHUNKS,
    SEALED_CHUNK_BYTES,
    UNBOUND_FORMAT_VERSION,
    _accept_unbound,
    _file_cipher,
    _nonce_and_aad,
    _path,
    _read_full,
    _read_header,
    _row_bytes,
)


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

    def _decrypt_chunks(self) -> Generator[bytes, None, None]:
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
