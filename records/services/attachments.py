"""Attachments: radiology uploads an image against an open order, encrypted as it is written."""

from __future__ import annotations

import uuid
from typing import IO, Any

from django.db import transaction
from django.utils import timezone

from accounts.roles import Capability, DataCategory
from records.models import Attachment, Order
from records.services.base import _changed, _require, _save, _worklist_order

D = DataCategory


@transaction.atomic
def attachment_upload(
    *,
    actor: Any,
    order_id: int,
    source: IO[bytes],
    filename: str,
    content_type: str,
    description: str = "",
    max_bytes: int,
) -> Attachment:
    """Radiology uploads an image against an open order; the file is encrypted as it is written."""
    from records import files

    _require(actor, Capability.UPLOAD_IMAGE)
    order = _worklist_order(actor, order_id)
    # The row identity comes first: the file is bound to the row that will point at it.
    row_uid = uuid.uuid4()
    stored = files.store_encrypted(source, max_bytes=max_bytes, row_uid=row_uid)
    try:
        attachment = Attachment(
            row_uid=row_uid,
            patient_id=order.patient_id,
            order_id=order.pk,
            kind=Attachment.Kind.IMAGING,
            filename=filename,
            content_type=content_type,
            description=description,
            sha256=stored.sha256,
            size=stored.size,
            storage_name=stored.storage_name,
            key_id=stored.key_id,
            uploaded_by=actor,
            uploaded_at=timezone.now(),
        )
        _save(attachment, actor)
        if order.status == Order.Status.OPEN:
            order.status = Order.Status.IN_PROGRESS
            order.save(update_fields=["status"])
        _changed(
            Attachment,
            actor=actor,
            patient_id=order.patient_id,
            category=D.IMAGING,
            action="create",
            fields=("filename", "content_type", "description"),
            object_id=attachment.pk,
        )
    except BaseException:
        # Nothing half-saved: the row did not commit, so the encrypted file must go too.
        files.delete_stored(stored.storage_name)
        raise
    return attachment
