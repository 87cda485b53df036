"""Attachment files are encrypted on disk in authenticated chunks, streamed with flat memory."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings

from healthcrypt.crypto import DecryptionError, generate_key
from records import files
from records.files import (
    CHUNK_BYTES,
    SEALED_CHUNK_BYTES,
    FileTooLarge,
    StoredFile,
    delete_stored,
    file_key_id,
    open_decrypted,
    reencrypt_file,
    store_encrypted,
)

# A recognisable plaintext pattern: it must never be found in a file on disk.
MARKER = b"PATIENT-Quaxlington-HC424242|"
# The row_uid of the attachment row the test files belong to.
ROW = uuid.UUID("5b2f7c1e-3d4a-4e8b-9c0d-1e2f3a4b5c6d")
MB = 1024 * 1024


@pytest.fixture(autouse=True)
def media_root(tmp_path: Path) -> Iterator[Path]:
    with override_settings(MEDIA_ROOT=tmp_path):
        yield tmp_path


class GeneratedStream(io.RawIOBase):
    """``size`` bytes of the marker pattern, generated as they are read (never held in memory)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.position = 0
        self._block = (MARKER * (CHUNK_BYTES // len(MARKER) + 2))[: CHUNK_BYTES + len(MARKER)]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        count = min(len(buffer), self.size - self.position, CHUNK_BYTES)
        offset = self.position % len(MARKER)
        buffer[:count] = self._block[offset : offset + count]
        self.position += count
        return count


class TrickleStream(io.RawIOBase):
    """Returns at most 1000 bytes per read, as sockets and upload handlers may."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        chunk = self._data.read(min(len(buffer), 1000))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def pattern(size: int) -> bytes:
    return (MARKER * (size // len(MARKER) + 1))[:size]


def store(data: bytes, max_bytes: int = 10 * MB) -> StoredFile:
    return store_encrypted(io.BytesIO(data), max_bytes=max_bytes, row_uid=ROW)


def read_back(storage_name: str) -> bytes:
    with open_decrypted(storage_name, row_uid=ROW) as chunks:
        return b"".join(chunks)


def path_of(stored: StoredFile) -> Path:
    return Path(settings.MEDIA_ROOT) / "attachments" / stored.storage_name


def header_length(kid: str) -> int:
    return len(files.MAGIC) + 2 + len(kid) + files.SALT_BYTES + files.NONCE_PREFIX_BYTES


def split(stored: StoredFile) -> tuple[bytes, list[bytes]]:
    """The header and the sealed chunks of a stored file, to tamper with."""
    raw = path_of(stored).read_bytes()
    head = header_length(stored.key_id)
    body = raw[head:]
    return raw[:head], [body[i : i + SEALED_CHUNK_BYTES] for i in range(0, len(body), SEALED_CHUNK_BYTES)]


def rewrite(stored: StoredFile, header: bytes, chunks: list[bytes]) -> None:
    path_of(stored).write_bytes(header + b"".join(chunks))


@pytest.mark.parametrize(
    "size",
    [0, 1, 1000, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 2 * CHUNK_BYTES, 3 * CHUNK_BYTES + 17],
    ids=["empty", "one-byte", "small", "chunk-minus-one", "exactly-one-chunk", "chunk-plus-one", "two-full", "multi"],
)
def test_round_trip(size: int) -> None:
    data = pattern(size)
    stored = store(data)
    assert read_back(stored.storage_name) == data
    assert stored.size == size
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.key_id == "test1"
    # Exactly one sealed chunk per started 64 KiB, and one (empty) chunk for an empty file.
    chunk_count = max(1, -(-size // CHUNK_BYTES))
    assert path_of(stored).stat().st_size == header_length("test1") + size + chunk_count * files.TAG_BYTES


def test_short_reads_from_the_source_give_the_same_file() -> None:
    data = pattern(2 * CHUNK_BYTES + 5)
    stored = store_encrypted(TrickleStream(data), max_bytes=MB, row_uid=ROW)  # type: ignore[arg-type]
    assert read_back(stored.storage_name) == data


def test_file_is_written_privately_under_a_random_name_with_no_temporary_left() -> None:
    first, second = store(b"x"), store(b"x")
    assert first.storage_name != second.storage_name
    assert len(first.storage_name) == 32
    assert int(first.storage_name, 16) >= 0
    assert stat.S_IMODE(path_of(first).stat().st_mode) == 0o600
    assert sorted(os.listdir(path_of(first).parent)) == sorted([first.storage_name, second.storage_name])


def test_file_on_disk_holds_no_plaintext() -> None:
    data = pattern(3 * CHUNK_BYTES)
    stored = store(data)
    raw = path_of(stored).read_bytes()
    assert MARKER not in raw
    assert b"Quaxlington" not in raw
    assert raw.startswith(b"HCF1")


def test_equal_files_give_different_ciphertexts() -> None:
    first, second = store(b"same content"), store(b"same content")
    assert split(first)[1] != split(second)[1]


def test_flipped_byte_in_a_chunk_fails_authentication() -> None:
    stored = store(pattern(2 * CHUNK_BYTES + 10))
    raw = bytearray(path_of(stored).read_bytes())
    raw[header_length("test1") + CHUNK_BYTES + 100] ^= 0x01
    path_of(stored).write_bytes(bytes(raw))
    with pytest.raises(DecryptionError) as excinfo:
        read_back(stored.storage_name)
    message = str(excinfo.value)
    assert stored.storage_name in message
    assert "'test1'" in message
    assert "Quaxlington" not in message


@pytest.mark.parametrize(
    "offset", [0, 4, 5, 7, 20, -1], ids=["magic", "version", "kid-length", "kid", "salt", "nonce-prefix"]
)
def test_altered_header_fails(offset: int) -> None:
    stored = store(pattern(1000))
    raw = bytearray(path_of(stored).read_bytes())
    raw[header_length("test1") + offset if offset < 0 else offset] ^= 0x01
    path_of(stored).write_bytes(bytes(raw))
    with pytest.raises(DecryptionError):
        read_back(stored.storage_name)


def test_truncated_file_fails() -> None:
    stored = store(pattern(2 * CHUNK_BYTES + 10))
    raw = path_of(stored).read_bytes()
    path_of(stored).write_bytes(raw[:-5])
    with pytest.raises(DecryptionError):
        read_back(stored.storage_name)


def test_swapped_chunks_fail() -> None:
    stored = store(pattern(3 * CHUNK_BYTES + 10))
    header, chunks = split(stored)
    assert len(chunks) == 4
    rewrite(stored, header, [chunks[1], chunks[0], *chunks[2:]])
    with pytest.raises(DecryptionError):
        read_back(stored.storage_name)


def test_dropped_last_chunk_fails_even_at_a_chunk_boundary() -> None:
    stored = store(pattern(2 * CHUNK_BYTES + 10))
    header, chunks = split(stored)
    rewrite(stored, header, chunks[:-1])
    with pytest.raises(DecryptionError):
        read_back(stored.storage_name)


def test_dropped_last_full_chunk_of_an_exact_multiple_fails() -> None:
    stored = store(pattern(2 * CHUNK_BYTES))
    header, chunks = split(stored)
    assert len(chunks) == 2
    rewrite(stored, header, chunks[:1])
    with pytest.raises(DecryptionError):
        read_back(stored.storage_name)


def test_dropped_middle_chunk_fails() -> None:
    stored = store(pattern(3 * CHUNK_BYTES + 10))
    header, chunks = split(stored)
    rewrite(stored, header, [chunks[0], *chunks[2:]])
    with pytest.raises(DecryptionError):
        read_back(stored.storage_name)


@pytest.mark.parametrize("extra", [b"x", b"\x00" * files.TAG_BYTES], ids=["byte", "empty-chunk"])
def test_appended_data_fails(extra: bytes) -> None:
    stored = store(pattern(CHUNK_BYTES + 10))
    path_of(stored).write_bytes(path_of(stored).read_bytes() + extra)
    with pytest.raises(DecryptionError):
        read_back(stored.storage_name)


def test_duplicated_chunk_fails() -> None:
    stored = store(pattern(2 * CHUNK_BYTES))
    header, chunks = split(stored)
    rewrite(stored, header, [chunks[0], *chunks])
    with pytest.raises(DecryptionError):
        read_back(stored.storage_name)


def test_header_without_chunks_fails() -> None:
    stored = store(b"")
    header, _chunks = split(stored)
    rewrite(stored, header, [])
    with pytest.raises(DecryptionError):
        read_back(stored.storage_name)


def test_file_copied_under_another_storage_name_does_not_decrypt() -> None:
    first, second = store(b"first patient's scan"), store(b"second patient's scan")
    path_of(second).write_bytes(path_of(first).read_bytes())
    with pytest.raises(DecryptionError):
        read_back(second.storage_name)


def test_unknown_key_id_raises_naming_the_file_and_key_only() -> None:
    with override_settings(FIELD_ENCRYPTION_KEYS=f"retired:{generate_key()}"):
        stored = store(pattern(1000))
    assert file_key_id(stored.storage_name) == "retired"
    with pytest.raises(DecryptionError) as excinfo:
        open_decrypted(stored.storage_name, row_uid=ROW)
    assert str(excinfo.value) == (
        f"Stored file {stored.storage_name} is under key 'retired', which is not in the keyring."
    )


def test_same_key_id_with_another_key_fails() -> None:
    with override_settings(FIELD_ENCRYPTION_KEYS=f"test1:{generate_key()}"):
        stored = store(pattern(1000))
    with pytest.raises(DecryptionError):
        read_back(stored.storage_name)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"HCF1",
        b"%PDF-1.7 not ours",
        b"HCF1\x03\x05test1" + b"\x00" * 60,  # a future version
        b"HCF1\x01\x05test1" + b"\x00" * 10,  # header cut short
        b"HCF1\x01\x05te st" + b"\x00" * 60,  # not a key id
        b"HCF1\x01\x02\xff\xfe" + b"\x00" * 60,  # not ASCII
        b"HCF1\x01\x00" + b"\x00" * 60,  # empty key id
    ],
    ids=["empty", "magic-only", "foreign", "future-version", "short-header", "bad-kid", "non-ascii-kid", "no-kid"],
)
def test_unknown_format_raises(content: bytes) -> None:
    stored = store(b"x")
    path_of(stored).write_bytes(content)
    with pytest.raises(DecryptionError, match="not in a known format"):
        open_decrypted(stored.storage_name, row_uid=ROW)
    with pytest.raises(DecryptionError):
        file_key_id(stored.storage_name)


@pytest.mark.parametrize("name", ["../settings", "ABCDEF0123456789ABCDEF0123456789", "", "a" * 31])
def test_only_storage_names_are_accepted(name: str) -> None:
    with pytest.raises(ValueError, match="Not a storage name"):
        open_decrypted(name, row_uid=ROW)
    with pytest.raises(ValueError, match="Not a storage name"):
        delete_stored(name)


def test_size_limit_is_enforced_with_no_partial_file_left(media_root: Path) -> None:
    source = GeneratedStream(10 * MB)
    with pytest.raises(FileTooLarge) as excinfo:
        store_encrypted(source, max_bytes=100_000, row_uid=ROW)  # type: ignore[arg-type]
    assert str(excinfo.value) == "The file is larger than the limit of 100000 bytes."
    assert os.listdir(media_root / "attachments") == []
    # It stopped reading soon after the limit instead of swallowing the whole upload.
    assert source.position <= 100_000 + 2 * CHUNK_BYTES


def test_a_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        store(b"", max_bytes=-1)


def test_a_file_of_exactly_the_limit_is_accepted() -> None:
    stored = store(pattern(CHUNK_BYTES), max_bytes=CHUNK_BYTES)
    assert stored.size == CHUNK_BYTES


def test_a_failing_upload_leaves_no_file(media_root: Path) -> None:
    class Broken(GeneratedStream):
        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            if self.position > CHUNK_BYTES:
                raise OSError("connection reset")
            return super().readinto(buffer)

    with pytest.raises(OSError, match="connection reset"):
        store_encrypted(Broken(MB), max_bytes=10 * MB, row_uid=ROW)  # type: ignore[arg-type]
    assert os.listdir(media_root / "attachments") == []


def test_memory_stays_flat_while_storing_and_reading_a_large_stream() -> None:
    size = 20 * MB
    tracemalloc.start()
    try:
        stored = store_encrypted(GeneratedStream(size), max_bytes=size, row_uid=ROW)  # type: ignore[arg-type]
        _, store_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        digest = hashlib.sha256()
        with open_decrypted(stored.storage_name, row_uid=ROW) as chunks:
            for chunk in chunks:
                digest.update(chunk)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stored.size == size
    assert digest.hexdigest() == stored.sha256
    # A handful of 64 KiB chunks, not the 20 MB file.
    assert store_peak < MB, store_peak
    assert read_peak < MB, read_peak


def test_reencrypt_writes_a_new_file_under_the_current_key_and_keeps_the_old_one() -> None:
    data = pattern(2 * CHUNK_BYTES + 99)
    old = store(data)
    with override_settings(FIELD_ENCRYPTION_KEYS=f"new:{generate_key()},{settings.FIELD_ENCRYPTION_KEYS}"):
        new = reencrypt_file(old.storage_name, row_uid=ROW, expected_sha256=old.sha256)
        assert new.storage_name != old.storage_name
        assert (new.key_id, new.sha256, new.size) == ("new", old.sha256, old.size)
        assert file_key_id(new.storage_name) == "new"
        assert read_back(new.storage_name) == data
        # The caller deletes the old file once the row points at the new one.
        assert read_back(old.storage_name) == data


def test_reencrypt_refuses_a_file_that_does_not_match_its_recorded_digest(media_root: Path) -> None:
    old = store(b"content")
    with pytest.raises(DecryptionError, match="does not match the digest"):
        reencrypt_file(old.storage_name, row_uid=ROW, expected_sha256=hashlib.sha256(b"other").hexdigest())
    assert os.listdir(media_root / "attachments") == [old.storage_name]


def test_reencrypt_of_a_tampered_file_fails_and_leaves_no_new_file(media_root: Path) -> None:
    old = store(pattern(3 * CHUNK_BYTES))
    header, chunks = split(old)
    rewrite(old, header, chunks[:-1])
    with pytest.raises(DecryptionError):
        reencrypt_file(old.storage_name, row_uid=ROW)
    assert os.listdir(media_root / "attachments") == [old.storage_name]


def test_delete_is_idempotent() -> None:
    stored = store(b"x")
    delete_stored(stored.storage_name)
    assert not path_of(stored).exists()
    delete_stored(stored.storage_name)
    with pytest.raises(FileNotFoundError):
        open_decrypted(stored.storage_name, row_uid=ROW)


def test_reencrypt_deletes_a_copy_that_does_not_read_back_identically(
    media_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = store(pattern(CHUNK_BYTES + 1))
    # Patched where reencrypt_file looks it up (records/files/reencrypt.py), not on the package.
    monkeypatch.setattr(files.reencrypt, "_plaintext_sha256", lambda storage_name, row_uid: "0" * 64)
    with pytest.raises(DecryptionError, match="did not read back identically"):
        reencrypt_file(old.storage_name, row_uid=ROW)
    assert os.listdir(media_root / "attachments") == [old.storage_name]
