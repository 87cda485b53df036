"""Error pages and the load balancer's health check. None of them echoes request data."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.views.decorators.http import require_safe

logger = logging.getLogger(__name__)


@login_not_required
@require_safe
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness and database reachability, without any detail an attacker could use."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        logger.exception("Health check: database unreachable")
        return JsonResponse({"status": "unavailable"}, status=503)
    return JsonResponse({"status": "ok"})


# Paths whose errors are not pages: a machine API registers how it answers (the partner API's
# OperationOutcomes, exchange/apps.py), so Django's own 400 and 403 (too many fields, a CSRF check)
# reach its clients in its format instead of as this site's HTML.
ErrorRenderer = Callable[[int, str], HttpResponse]
_API_ERRORS: dict[str, ErrorRenderer] = {}


def register_api_errors(prefix: str, renderer: ErrorRenderer) -> None:
    """Errors of requests under ``prefix`` (``/fhir/r4/``) are ``renderer(status, message)``."""
    _API_ERRORS[prefix] = renderer


def render_error(request: HttpRequest, status: int, title: str, message: str) -> HttpResponse:
    """The friendly error page; the message is ours, never request data or patient data."""
    for prefix, renderer in _API_ERRORS.items():
        if request.path.startswith(prefix):
            return renderer(status, message)
    return render(request, "error.html", {"status": status, "title": title, "message": message}, status=status)


_error = render_error


@login_not_required
def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error(request, 400, "Bad request", "The request could not be understood. Please check what you entered.")


@login_not_required
def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    # The exception text is ours (never patient data) and tells the person what to do next.
    message = str(exception) if exception and str(exception) else "Your role does not allow this."
    return _error(request, 403, "Not allowed", message)


@login_not_required
def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    # Same page whether the thing does not exist or exists but is not yours: no existence leak.
    return _error(request, 404, "Not found", "There is nothing here, or nothing that you may see.")


@login_not_required
def server_error(request: HttpRequest) -> HttpResponse:
    # Rendered without the request context: the failure may be the database, which the
    # navigation (request.user) would need. Requests are atomic, so nothing was half-saved.
    context = {
        "status": 500,
        "title": "Something went wrong",
        "message": "The error has been logged and nothing was saved. Please try again.",
    }
    return HttpResponse(render_to_string("error.html", context), status=500)


@login_not_required
def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    return _error(
        request,
        403,
        "Form expired",
        "This form was sent without a valid security token (it may have been open too long). "
        "Go back, reload the page and try again.",
    )
