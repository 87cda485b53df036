"""Radiology and the laboratory: the worklist, results, reports, images; attachment downloads."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET, require_POST

from accounts.decorators import capability_required, step_up_required
from accounts.roles import Capability
from healthcrypt.crypto import DecryptionError
from records import files, forms, selectors, services
from records.downloads import download_name
from records.views.base import _write
from records.views.chart import _abilities, patient_banner

logger = logging.getLogger(__name__)

C = Capability


@require_GET
@capability_required(C.VIEW_WORKLIST)
@step_up_required
def worklist(request: HttpRequest) -> HttpResponse:
    rows, page = selectors.worklist(actor=request.user, page=request.GET.get("page"))
    return render(request, "records/worklist.html", {"rows": rows, "page": page})


@require_GET
@capability_required(C.VIEW_WORKLIST)
@step_up_required
def worklist_completed(request: HttpRequest) -> HttpResponse:
    """The department's history: orders it completed, newest first, who completed them and when."""
    rows, page = selectors.completed_orders(actor=request.user, page=request.GET.get("page"))
    return render(request, "records/worklist_completed.html", {"rows": rows, "page": page})


@require_GET
@capability_required(C.VIEW_WORKLIST)
@step_up_required
def order_detail(request: HttpRequest, order_id: int) -> HttpResponse:
    try:
        order, record = selectors.order_for_worklist(actor=request.user, order_id=order_id)
    except selectors.AccessRefused as refused:
        if refused.status != 404:
            raise
        # Not open (or not ours): a completed order of the department answers read-only; anything
        # else is the same 404 as before.
        order, record = selectors.completed_order_for_department(actor=request.user, order_id=order_id)
        return render(request, "records/order_detail.html", {"order": order, "chart": record, "read_only": True})
    context = {
        "order": order,
        "chart": record,
        "read_only": False,
        "result_form": forms.ResultForm(),
        "upload_form": forms.UploadForm(max_bytes=settings.ATTACHMENT_MAX_BYTES),
        "report_form": forms.NoteForm(initial={"kind": "radiology" if order.kind == "Radiology" else "lab"}),
        "can": _abilities(request),
    }
    return render(request, "records/order_detail.html", context)


def _order_write(
    request: HttpRequest,
    order_id: int,
    form: Any,
    action: Callable[[dict[str, Any]], Any],
    title: str,
    message: str,
    *,
    patient_id: int | None = None,
) -> HttpResponse:
    success = reverse("records:order_detail", args=[order_id])
    return _write(
        request,
        form=form,
        action=action,
        success=success,
        template="records/form.html",
        context={"title": title, "submit": "Save", "cancel": success},
        success_message=message,
        # A rejected result keeps the patient banner (read through the audited chart selector).
        error_context=(lambda: patient_banner(request, patient_id)) if patient_id is not None else None,
    )


@require_POST
@capability_required(C.ENTER_RESULT)
def order_result(request: HttpRequest, order_id: int) -> HttpResponse:
    order = selectors.worklist_order(actor=request.user, order_id=order_id)
    return _order_write(
        request,
        order_id,
        forms.ResultForm(request.POST),
        lambda d: services.observation_record(
            actor=request.user,
            patient_id=order.patient_id,
            category="laboratory" if order.kind == "lab" else "imaging",
            display=d["display"],
            value=d["value"],
            unit=d["unit"],
            loinc_code=d["loinc_code"],
            order_id=order_id,
        ),
        "Enter a result",
        "Result saved.",
        patient_id=order.patient_id,
    )


@require_POST
@capability_required(C.WRITE_NOTE)
def order_report(request: HttpRequest, order_id: int) -> HttpResponse:
    order = selectors.worklist_order(actor=request.user, order_id=order_id)
    return _order_write(
        request,
        order_id,
        forms.NoteForm(request.POST),
        lambda d: services.note_write(
            actor=request.user, patient_id=order.patient_id, kind=d["kind"], text=d["text"], order_id=order_id
        ),
        "Write a report",
        "Report signed.",
    )


@require_POST
@capability_required(C.UPLOAD_IMAGE)
def order_upload(request: HttpRequest, order_id: int) -> HttpResponse:
    selectors.worklist_order(actor=request.user, order_id=order_id)
    form = forms.UploadForm(request.POST, request.FILES, max_bytes=settings.ATTACHMENT_MAX_BYTES)

    def save(data: dict[str, Any]) -> None:
        upload = data["file"]
        try:
            services.attachment_upload(
                actor=request.user,
                order_id=order_id,
                source=upload,
                filename=upload.name[:255],
                content_type=data["content_type"],
                description=data["description"],
                max_bytes=settings.ATTACHMENT_MAX_BYTES,
            )
        except files.FileTooLarge as error:
            raise ValidationError({"file": str(error)}) from None

    return _order_write(request, order_id, form, save, "Upload an image", "Image uploaded and encrypted.")


@require_POST
@capability_required(C.COMPLETE_ORDER)
def order_complete(request: HttpRequest, order_id: int) -> HttpResponse:
    services.order_complete(actor=request.user, order_id=order_id)
    messages.success(request, "Order completed; it has left the worklist.")
    return redirect("records:worklist")


def _verified(chunks: Iterator[bytes], sha256: str, attachment_id: int) -> Iterator[bytes]:
    """Pass chunks through, and abort the transfer if the whole file does not match its recorded hash."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
        yield chunk
    if digest.hexdigest() != sha256:
        logger.error("Attachment %s does not match its recorded SHA-256; transfer aborted", attachment_id)
        raise DecryptionError(f"Attachment {attachment_id} failed its integrity check.")


@require_GET
@step_up_required
def attachment_download(request: HttpRequest, attachment_id: int) -> StreamingHttpResponse:
    """Stream the decrypted file; the download is recorded before the first byte is decrypted.

    Each chunk is authenticated as it is decrypted (records/files); the whole file must also match
    the SHA-256 recorded at upload, or the transfer is aborted before its end.
    """
    attachment = selectors.attachment_for_download(actor=request.user, attachment_id=attachment_id)
    chunks = files.open_decrypted(attachment.storage_name, row_uid=attachment.row_uid)
    response = StreamingHttpResponse(
        _verified(chunks, attachment.sha256, attachment.pk), content_type=attachment.content_type
    )
    name = download_name(
        content_type=attachment.content_type,
        order_id=attachment.order_id,
        attachment_id=attachment.pk,
        uploaded_at=attachment.uploaded_at,
    )
    # RFC 6266: a plain quoted ASCII name (download_name makes nothing else), filename* if ever needed.
    response["Content-Disposition"] = content_disposition_header(as_attachment=True, filename=name) or "attachment"
    response["Content-Length"] = str(attachment.size)
    response["X-Content-Type-Options"] = "nosniff"
    return response
