"""Response headers that every Healthcrypt page carries."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers

# Everything is served from our own origin: no CDN, no inline script, no framing.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"


class SecurityHeadersMiddleware:
    """Adds a strict CSP and Permissions-Policy, and forbids caching of every dynamic page.

    Pages may carry patient data, and a shared ward computer's browser cache or a proxy must not
    keep a copy. Static files are served by WhiteNoise before this middleware runs, so they keep
    their long-lived cache headers. A response that holds only public data may opt out by setting
    ``response.public_cacheable = True`` (the hospital's public JWKS, exchange/api/jwks.py); nothing
    else does, so a page forgets nothing by default.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        if getattr(response, "public_cacheable", False) is not True:
            add_never_cache_headers(response)
        return response
