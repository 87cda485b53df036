"""An upload handler that never puts an upload's plaintext on disk.

Django spools uploads larger than FILE_UPLOAD_MAX_MEMORY_SIZE to a temporary file, in plaintext:
an X-ray would sit readable in /tmp until the request ends (and in freed disk blocks after). This
handler encrypts each chunk as it arrives, with AES-256-CTR under a random key that lives only in
this process's memory, and hands the view a file object that decrypts as it is read. The upload is
then re-encrypted under the keyring by records/files/; the ephemeral key dies with the request,
so whatever the temporary file leaves behind is noise.

CTR mode (no authentication) is enough here: the file never leaves this process's control, and the
data is authenticated when records/files/ seals it. Memory stays flat: one chunk at a time.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from typing import IO, Any, cast

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler

BLOCK = 16


class _CtrTempFile:
    """A temporary file written encrypted and read back decrypted, seekable for ``read``/``seek``."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._nonce = secrets.token_bytes(BLOCK)
        self.file: IO[bytes] = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the upload
            suffix=".upload", dir=settings.FILE_UPLOAD_TEMP_DIR
        )
        self._encryptor = Cipher(algorithms.AES(self._key), modes.CTR(self._nonce)).encryptor()
        self._position = 0
        self._decryptor: Any = None

    def write(self, data: bytes) -> None:
        self.file.write(self._encryptor.update(data))

    def _counter_at(self, offset: int) -> bytes:
        value = (int.from_bytes(self._nonce, "big") + offset // BLOCK) % (1 << 128)
        return value.to_bytes(BLOCK, "big")

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_CUR:
            offset += self._position
        elif whence == os.SEEK_END:
            self.file.seek(0, os.SEEK_END)
            offset += self.file.tell()
        self.file.seek(offset)
        self._position = offset
        self._decryptor = Cipher(algorithms.AES(self._key), modes.CTR(self._counter_at(offset))).decryptor()
        # Skip into the block the offset falls in.
        self._decryptor.update(b"\x00" * (offset % BLOCK))
        return offset

    def tell(self) -> int:
        return self._position

    def read(self, size: int = -1) -> bytes:
        if self._decryptor is None:
            self.seek(self._position)
        data = self.file.read(size)
        self._position += len(data)
        return bytes(self._decryptor.update(data))

    def close(self) -> None:
        self.file.close()
        self._key = b""


class EncryptedTemporaryUploadedFile(UploadedFile):
    """What a view receives for a large upload: reads decrypt, the disk holds ciphertext only."""

    def __init__(
        self,
        name: str | None,
        content_type: str | None,
        size: int,
        charset: str | None,
        content_type_extra: dict[str, bytes] | None = None,
    ) -> None:
        self._ctr = _CtrTempFile()
        # Django's File wraps any file-like object (it calls read, seek, tell and close, which
        # _CtrTempFile has); its stubs ask for a full IO.
        super().__init__(cast(IO[bytes], self._ctr), name, content_type, size, charset, content_type_extra)

    def temporary_file_path(self) -> str:
        # Never hand out the path: what is there is ciphertext, useless to anyone reading it.
        raise NotImplementedError("Encrypted uploads have no usable path on disk.")

    def chunks(self, chunk_size: int | None = None) -> Any:
        self.seek(0)
        while data := self.read(chunk_size or self.DEFAULT_CHUNK_SIZE):
            yield data

    def close(self) -> None:
        self._ctr.close()


class EncryptedTemporaryFileUploadHandler(FileUploadHandler):
    """Replaces Django's TemporaryFileUploadHandler (FILE_UPLOAD_HANDLERS in settings.py)."""

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self.file = EncryptedTemporaryUploadedFile(
            self.file_name, self.content_type, 0, self.charset, self.content_type_extra
        )

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        self.file._ctr.write(raw_data)
        return None

    def file_complete(self, file_size: int) -> UploadedFile:
        self.file._ctr.file.flush()
        self.file.seek(0)
        self.file.size = file_size
        return self.file
