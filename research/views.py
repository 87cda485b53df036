"""The research pages under /research/ (issue 13): a researcher's requests and download, compliance's
review. Thin views (STYLE.md): capability -> form -> service -> render.

Nothing here shows patient data: requests hold criteria, datasets counts and a privacy report. The
researcher sees only their own requests (another's is a 404). The download is single use and
expiring (research/downloads.py); its refusals answer 404 and are recorded.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.utils.http import content_disposition_header
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.decorators import capability_required
from accounts.roles import Capability
from accounts.services import auth_event_emit
from accounts.signals import AuthEvent
from healthcrypt.views import render_error
from research import downloads, selectors
from research.forms import SERVICE_FIELD_NAMES, DecisionForm, RequestForm
from research.models import DatasetRequest
from research.services import RequestNotFound, request_decide, request_submit

logger = logging.getLogger(__name__)

request_dataset = capability_required(Capability.REQUEST_DATASET)
approve_dataset = capability_required(Capability.APPROVE_DATASET)


def _errors_to_form(form: Any, exc: ValidationError) -> None:
    """Put a service's ValidationError on the form's fields (unknown keys: on the form as a whole)."""
    if hasattr(exc, "error_dict"):
        for key, errors in exc.message_dict.items():
            field = SERVICE_FIELD_NAMES.get(key, key)
            for message in errors:
                form.add_error(field if field in form.fields else None, message)
    else:
        for message in exc.messages:
            form.add_error(None, message)


# --- The researcher ------------------------------------------------------------------------------


@require_GET
@request_dataset
def my_requests(request: HttpRequest) -> HttpResponse:
    return render(request, "research/my_requests.html", {"requests": selectors.requests_of(request.user)})


@require_http_methods(["GET", "POST"])
@request_dataset
def request_new(request: HttpRequest) -> HttpResponse:
    form = RequestForm(request.POST if request.method == "POST" else None)
    if request.method == "POST":
        if form.is_valid():
            try:
                created = request_submit(actor=request.user, **form.submit_kwargs())
            except ValidationError as exc:
                _errors_to_form(form, exc)
            else:
                messages.success(request, "Your request was submitted for review.")
                return redirect("research:request", request_id=created.pk)
        return render(request, "research/request_new.html", {"form": form}, status=400)
    return render(request, "research/request_new.html", {"form": form})


@require_GET
@request_dataset
def request_detail(request: HttpRequest, request_id: int) -> HttpResponse:
    item = selectors.request_of(request.user, request_id)
    if item is None:
        raise Http404
    dataset = selectors.newest_dataset(item)
    available = dataset is not None and downloads.files_present(dataset)
    context = {"item": item, "dataset": dataset, "available": available}
    return render(request, "research/request_detail.html", context)


@require_POST
@request_dataset
def download_prepare(request: HttpRequest, request_id: int) -> HttpResponse:
    """A new single-use link, shown once in this page (the token is stored only as its SHA-256)."""
    try:
        token = downloads.download_grant_issue(actor=request.user, request_id=request_id)
    except RequestNotFound:
        raise Http404 from None
    logger.info("Download link issued to user %s for request %s", request.user.pk, request_id)
    context = {"request_id": request_id, "token": token, "minutes": settings.RESEARCH_DOWNLOAD_MINUTES}
    response = render(request, "research/download_ready.html", context)
    response["Cache-Control"] = "no-store"
    return response


@transaction.non_atomic_requests
@never_cache
@require_POST
@request_dataset
def download(request: HttpRequest) -> HttpResponseBase:
    """Serve the archive once. The token is posted (never in a URL, so never in a server's or proxy's
    log). Not one transaction per request: a refusal is recorded and kept even though the answer is a
    404; the grant is spent and the disclosure recorded together (downloads.py)."""
    token = request.POST.get("token", "")[:200]
    try:
        ready = downloads.download_open(actor=request.user, token=token)
    except downloads.DownloadRefused as exc:
        detail: dict[str, Any] = {"reason": exc.reason}
        if exc.grant_id is not None:
            detail["grant"] = exc.grant_id
        with transaction.atomic():
            auth_event_emit(AuthEvent.RESEARCH_DOWNLOAD_REFUSED, request=request, actor=request.user, **detail)
        logger.warning("Dataset download refused for user %s: %s", request.user.pk, exc.reason)
        return render_error(request, 404, "Not found", "This download link is not valid. Ask for a new one.")
    response = FileResponse(ready.file, content_type="application/zip")
    response["Content-Disposition"] = (
        content_disposition_header(as_attachment=True, filename=ready.filename) or "attachment"
    )
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    logger.info("Dataset %s downloaded by user %s", ready.dataset_id, request.user.pk)
    return response


# --- Compliance -----------------------------------------------------------------------------------


@require_GET
@approve_dataset
def review_list(request: HttpRequest) -> HttpResponse:
    context = {"submitted": selectors.submitted_requests(), "datasets": selectors.built_datasets()}
    return render(request, "research/review_list.html", context)


@require_http_methods(["GET", "POST"])
@approve_dataset
def review_detail(request: HttpRequest, request_id: int) -> HttpResponse:
    item = selectors.request_for_review(request_id)
    if item is None:
        raise Http404
    form = DecisionForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                request_decide(
                    actor=request.user,
                    request_id=item.pk,
                    approve=form.cleaned_data["decision"] == "approve",
                    note=form.cleaned_data["note"],
                )
            except ValidationError as exc:
                _errors_to_form(form, exc)
            except RequestNotFound:
                raise Http404 from None
            else:
                messages.success(request, f"Request {item.pk} was decided.")
                return redirect("research:review")
        status = 400
    dataset = selectors.newest_dataset(item)
    context = {
        "item": item,
        "form": form,
        "dataset": dataset,
        "decidable": item.status == DatasetRequest.Status.SUBMITTED,
    }
    return render(request, "research/review_detail.html", context, status=status)
