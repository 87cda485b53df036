"""``POST /fhir/r4/auth/token``: SMART Backend Services (OAuth 2.0 client credentials with a
``private_key_jwt`` client assertion, RFC 7523). See docs/operations/partners.md."""

from __future__ import annotations

import logging
import math
import time

from axes.helpers import get_client_ip_address
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from accounts.signals import AuthEvent
from exchange.api.assertion import ASSERTION_TYPE, AssertionRefused, verify_assertion
from exchange.api.responses import oauth_error
from exchange.partners import scopes as scope_rules
from exchange.partners.models import Partner
from exchange.partners.services import ReplayedAssertion, token_issue, token_refusal_record

logger = logging.getLogger(__name__)

FORM = "application/x-www-form-urlencoded"
TOKEN_WINDOW_SECONDS = 60


def api_base_url(request: HttpRequest) -> str:
    """The API's public base URL (setting FHIR_BASE_URL, e.g. ``https://ehr.example.org/fhir/r4``);
    without it, the URL this request reached (its host already checked against ALLOWED_HOSTS)."""
    configured = str(getattr(settings, "FHIR_BASE_URL", "") or "").rstrip("/")
    if configured:
        return configured
    return request.build_absolute_uri(reverse("fhir:metadata")).removesuffix("/metadata")


def token_url(request: HttpRequest) -> str:
    """The token endpoint's URL: what ``aud`` of a client assertion must be."""
    return f"{api_base_url(request)}/auth/token"


def seconds_until_allowed(request: HttpRequest, now: float | None = None) -> int:
    """0 if this client address is within PARTNER_TOKEN_REQUESTS_PER_MINUTE (a fixed window in the
    cache, counted before anything else is looked at), else the seconds until its next window."""
    now = time.time() if now is None else now
    window = int(now // TOKEN_WINDOW_SECONDS)
    key = f"exchange:token-ip:{get_client_ip_address(request) or 'unknown'}:{window}"
    cache.add(key, 0, timeout=TOKEN_WINDOW_SECONDS * 2)
    try:
        count = cache.incr(key)
    except ValueError:  # evicted between add and incr: this request is the window's first
        cache.set(key, 1, timeout=TOKEN_WINDOW_SECONDS * 2)
        count = 1
    if count <= settings.PARTNER_TOKEN_REQUESTS_PER_MINUTE:
        return 0
    return max(1, math.ceil((window + 1) * TOKEN_WINDOW_SECONDS - now))


class TokenRefused(Exception):
    def __init__(self, error: str, reason: str, partner: Partner | None = None, client_id: str = "") -> None:
        super().__init__(reason)
        self.error, self.reason, self.partner, self.client_id = error, reason, partner, client_id


def _issue(request: HttpRequest) -> HttpResponse:
    content_type = request.content_type or ""
    if content_type != FORM:
        raise TokenRefused("invalid_request", "content_type")
    form = request.POST
    if form.get("grant_type") != "client_credentials":
        raise TokenRefused("unsupported_grant_type", "grant_type")
    if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
        raise TokenRefused("invalid_client", "assertion_type")
    try:
        verified = verify_assertion(form["client_assertion"], token_url=token_url(request))
    except AssertionRefused as refused:
        raise TokenRefused(refused.error, refused.reason, refused.partner, refused.client_id) from refused
    partner = verified.partner
    # An optional client_id must name the same client as the assertion (RFC 7521 §4.2).
    if form.get("client_id") not in (None, partner.client_id):
        raise TokenRefused("invalid_client", "client_id", partner)
    granted, spelled = scope_rules.grant(form.get("scope", ""), partner.allowed_scopes)
    if not granted:
        raise TokenRefused("invalid_scope", "scope", partner)
    try:
        issued = token_issue(
            partner=partner,
            scopes=granted,
            jti=verified.jti,
            assertion_expires_at=verified.expires_at,
            request=request,
        )
    except ReplayedAssertion as exc:
        raise TokenRefused("invalid_grant", "replayed_jti", partner) from exc
    response = JsonResponse(
        {
            "access_token": issued.token,
            "token_type": "bearer",
            "expires_in": int((issued.row.expires_at - issued.row.issued_at).total_seconds()),
            "scope": " ".join(spelled),
        }
    )
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    return response


@login_not_required
@csrf_exempt  # a machine-to-machine endpoint: no cookies, no session, the assertion is the proof
@require_POST
@sensitive_post_parameters("client_assertion")
def token(request: HttpRequest) -> HttpResponse:
    """Issue an access token, or answer with an OAuth error code (never which check failed)."""
    wait = seconds_until_allowed(request)
    if wait:
        token_refusal_record(
            request=request, event=AuthEvent.PARTNER_TOKEN_REFUSED, error="slow_down", reason="rate_limited"
        )
        logger.info("partner token refused: slow_down (rate_limited)")
        response = oauth_error("slow_down")
        response["Retry-After"] = str(wait)
        return response
    try:
        return _issue(request)
    except TokenRefused as refused:
        token_refusal_record(
            request=request,
            event=AuthEvent.PARTNER_TOKEN_REFUSED,
            error=refused.error,
            reason=refused.reason,
            client_id=refused.client_id,
            partner=refused.partner,
        )
        logger.info("partner token refused: %s (%s)", refused.error, refused.reason)
        return oauth_error(refused.error)
