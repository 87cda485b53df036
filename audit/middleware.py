"""Puts the request's address, user agent, a request id and a hashed session reference in context."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable

from axes.helpers import get_client_ip_address, get_client_user_agent
from django.http import HttpRequest, HttpResponse

from audit import context


class AuditContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request.headers.get("X-Request-ID", "")[:64] or uuid.uuid4().hex
        session_key = getattr(getattr(request, "session", None), "session_key", None) or ""
        token = context.set_current(
            context.RequestContext(
                ip=get_client_ip_address(request),
                user_agent=get_client_user_agent(request)[:255],
                request_id=request_id,
                # A hash links the events of one session without storing a usable session key.
                session_ref=hashlib.sha256(session_key.encode()).hexdigest()[:32] if session_key else "",
            )
        )
        try:
            response = self.get_response(request)
        finally:
            context.reset(token)
        response.headers.setdefault("X-Request-ID", request_id)
        return response
