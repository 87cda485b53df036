"""Turns refusals of the read and write paths into the right pages, never a 500."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from healthcrypt.views import render_error
from records.selectors import AccessNotRecorded, AccessRefused
from records.services import RecordNotFound

logger = logging.getLogger(__name__)


class RecordAccessErrorsMiddleware:
    """AccessRefused -> 403/404, RecordNotFound -> 404, AccessNotRecorded -> 503 (fail closed)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, AccessRefused):
            if exception.status == 403:
                return render_error(request, 403, "Not allowed", "Your role does not allow this.")
            return render_error(request, 404, "Not found", "There is nothing here, or nothing that you may see.")
        if isinstance(exception, RecordNotFound):
            return render_error(request, 404, "Not found", "There is nothing here, or nothing that you may see.")
        if isinstance(exception, AccessNotRecorded):
            return render_error(
                request,
                503,
                "Not available right now",
                "This access could not be recorded in the audit trail, so nothing was shown. Try again shortly.",
            )
        return None
