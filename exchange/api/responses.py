"""The API's answers: FHIR JSON, OperationOutcome errors, OAuth 2.0 errors (RFC 6749 §5.2)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

FHIR_JSON = "application/fhir+json"

# OperationOutcome.issue.code for each HTTP status the API answers with an error.
ISSUE_CODES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported", 429: "throttled"}


def fhir_response(body: dict[str, Any], status: int = 200) -> JsonResponse:
    response = JsonResponse(body, status=status, content_type=FHIR_JSON)
    response["Cache-Control"] = "no-store"
    return response


def operation_outcome(status: int, diagnostics: str, **headers: str) -> JsonResponse:
    """An OperationOutcome with one error issue. ``diagnostics`` is fixed text, never request data."""
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": ISSUE_CODES.get(status, "processing"), "diagnostics": diagnostics}],
    }
    response = fhir_response(body, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


# The status of each OAuth error of the token endpoint. invalid_client is 401 (RFC 6749 §5.2).
OAUTH_STATUS = {
    "invalid_request": 400,
    "invalid_client": 401,
    "invalid_grant": 400,
    "invalid_scope": 400,
    "unsupported_grant_type": 400,
    # Too many token requests from one address (RFC 8628's code for "poll more slowly").
    "slow_down": 429,
}


def oauth_error(error: str) -> JsonResponse:
    """An OAuth 2.0 error: the code alone, so a caller learns nothing about which check failed."""
    response = JsonResponse({"error": error}, status=OAUTH_STATUS[error])
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    return response


def api_methods(*methods: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Allow only ``methods``; any other is a 405 OperationOutcome naming the allowed ones (instead of
    Django's empty ``require_GET`` answer). The view is exempt from the CSRF check: a bearer-token API
    has no cookies or session a browser could be tricked into sending, and a POST to a GET endpoint
    must get the API's 405, not the site's "form expired" page."""
    allowed = ", ".join(methods)

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                return operation_outcome(405, f"This endpoint answers {allowed} only.", Allow=allowed)
            return view(request, *args, **kwargs)

        return csrf_exempt(wrapper)

    return decorate
