"""Large uploads are spooled to disk encrypted under a throwaway key, never in plaintext."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings
from django.urls import reverse

from accounts.models import User
from records.demo_clinical import tiny_png
from records.files import open_decrypted
from records.models import Attachment
from records.uploads import EncryptedTemporaryFileUploadHandler
from tests.records.conftest import Ward

PLAINTEXT = b"".join(f"patient-image-line-{i:05d}\n".encode() for i in range(5000))  # ~125 kB


def spool(data: bytes, chunk: int = 4096) -> EncryptedTemporaryFileUploadHandler:
    handler = EncryptedTemporaryFileUploadHandler()
    handler.new_file("file", "scan.png", "image/png", len(data), None)
    for start in range(0, len(data), chunk):
        handler.receive_data_chunk(data[start : start + chunk], start)
    handler.upload = handler.file_complete(len(data))  # type: ignore[attr-defined]
    return handler


def test_spooled_bytes_on_disk_are_not_the_upload() -> None:
    upload = spool(PLAINTEXT).upload  # type: ignore[attr-defined]
    with open(upload._ctr.file.name, "rb") as raw:
        on_disk = raw.read()
    assert len(on_disk) == len(PLAINTEXT)
    assert b"patient-image-line" not in on_disk
    assert upload.read() == PLAINTEXT
    upload.close()


@pytest.mark.parametrize("offset", [0, 1, 15, 16, 17, 4095, 70_001])
def test_reads_after_any_seek_return_the_right_bytes(offset: int) -> None:
    upload = spool(PLAINTEXT, chunk=1000).upload  # type: ignore[attr-defined]
    upload.seek(offset)
    assert upload.read(100) == PLAINTEXT[offset : offset + 100]
    assert upload.tell() == offset + 100
    upload.seek(0)
    assert b"".join(upload.chunks(8192)) == PLAINTEXT
    upload.close()


def test_spooled_file_offers_no_path_on_disk() -> None:
    upload = spool(b"x").upload  # type: ignore[attr-defined]
    with pytest.raises(NotImplementedError):
        upload.temporary_file_path()
    path = upload._ctr.file.name
    upload.close()
    assert not os.path.exists(path)


@pytest.mark.django_db
def test_large_upload_goes_through_the_encrypted_spool_to_an_encrypted_attachment(
    ward: Ward, radiology: User, client_for: Callable[[User], Client], tmp_path: object
) -> None:
    png = tiny_png(3) + b"\x00" * 50_000  # a valid PNG signature, bigger than the memory threshold below
    with override_settings(FILE_UPLOAD_MAX_MEMORY_SIZE=1000, MEDIA_ROOT=tmp_path):
        response = client_for(radiology).post(
            reverse("records:order_upload", args=[ward.radiology_order.pk]),
            {"file": SimpleUploadedFile("big.png", png, content_type="image/png")},
        )
        assert response.status_code == 302
        attachment = Attachment.objects.get()
        assert b"".join(open_decrypted(attachment.storage_name, row_uid=attachment.row_uid)) == png
