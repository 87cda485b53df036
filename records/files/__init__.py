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

Where to look: ``format`` (constants, header, cipher, paths), ``storage`` (store_encrypted,
delete_stored, file_header), ``streaming`` (open_decrypted) and ``reencrypt`` (reencrypt_file, for
rotate_keys). Every public name, and the format constants, are importable from ``records.files``.
"""

from __future__ import annotations

from records.files.format import (
    ATTACHMENTS_DIR,
    CHUNK_BYTES,
    FORMAT_VERSION,
    HKDF_INFO,
    MAGIC,
    MAX_CHUNKS,
    NONCE_PREFIX_BYTES,
    SALT_BYTES,
    SEALED_CHUNK_BYTES,
    TAG_BYTES,
    UNBOUND_FORMAT_VERSION,
    attachments_dir,
)
from records.files.reencrypt import reencrypt_file
from records.files.storage import FileTooLarge, StoredFile, delete_stored, file_header, file_key_id, store_encrypted
from records.files.streaming import DecryptedFile, open_decrypted

__all__ = [
    "ATTACHMENTS_DIR",
    "CHUNK_BYTES",
    "FORMAT_VERSION",
    "HKDF_INFO",
    "MAGIC",
    "MAX_CHUNKS",
    "NONCE_PREFIX_BYTES",
    "SALT_BYTES",
    "SEALED_CHUNK_BYTES",
    "TAG_BYTES",
    "UNBOUND_FORMAT_VERSION",
    "DecryptedFile",
    "FileTooLarge",
    "StoredFile",
    "attachments_dir",
    "delete_stored",
    "file_header",
    "file_key_id",
    "open_decrypted",
    "reencrypt_file",
    "store_encrypted",
]
