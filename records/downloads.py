"""What a downloaded attachment is called: a word for what it is, ids, the upload date and the extension
of its stored (sniffed, records/forms.py ALLOWED_SIGNATURES) content type. Never the uploaded file
name, which may hold a patient's name, and nothing else about the patient."""

from __future__ import annotations

import datetime

from django.utils import timezone

DOWNLOAD_NAMES = {
    "application/pdf": ("report", "pdf"),
    "image/png": ("image", "png"),
    "image/jpeg": ("image", "jpg"),
    "application/dicom": ("study", "dcm"),
}
# A stored type not listed above (none is accepted today): a neutral name that no program opens by itself.
UNKNOWN = ("file", "bin")


def download_name(
    *, content_type: str, order_id: int | None, attachment_id: int, uploaded_at: datetime.datetime
) -> str:
    """``report-<order id>-<yyyymmdd>-<attachment id>.pdf`` and the like: ASCII letters, digits and
    hyphens only, so it needs no escaping in a Content-Disposition header or any file system."""
    word, extension = DOWNLOAD_NAMES.get(content_type, UNKNOWN)
    day = timezone.localdate(uploaded_at).strftime("%Y%m%d")
    parts = [word, *([str(order_id)] if order_id else []), day, str(attachment_id)]
    return f"{'-'.join(parts)}.{extension}"
