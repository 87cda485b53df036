"""Bearer tokens on the API's resource endpoints: who is calling, with which scopes, how often.

``@partner_api("Patient")`` on a view: the ``Authorization: Bearer`` token must name a live token
(not expired, not revoked) of an active partner, carry ``system/Patient.rs``, and the partner must
be within its rate limit. The view receives ``request.partner_auth`` (a :class:`PartnerAuth`).
Refusals are OperationOutcomes (401 with ``WWW-Authenticate``, 403, 429 with ``Retry-After``) and
auth events; the token itself is never logged or recorded.

``patient_for_partner`` answers whether the partner may see a patient: 404 when no sharing covers
them, the same answer as for an id that does not exist.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from django.contrib.auth.decorators import login_not_required
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from accounts.signals import AuthEvent
from exchange.api.responses import operation_outcome
from exchange.api.token import seconds_until_allowed
from exchange.partners.models import AccessToken, Partner
from exchange.partners.scopes import RESOURCE_TYPES
from exchange.partners.selectors import partner_may_see_patient
from exchange.partners.services import token_hash, token_refusal_record

# Longer than any token we issue (43 characters); a longer header is not ours.
MAX_TOKEN_LENGTH = 200
RATE_WINDOW_SECONDS = 60


class ApiRefused(Exception):
    """Refuse the request with an OperationOutcome."""

    def __init__(self, status: int, diagnostics: str, reason: str, **headers: str) -> None:
        super().__init__(reason)
        self.status = status
        self.diagnostics = diagnostics
        self.reason = reason
        self.headers = headers

    def response(self) -> HttpResponse:
        return operation_outcome(self.status, self.diagnostics, **self.headers)


@dataclass(frozen=True)
class PartnerAuth:
    partner: Partner
    token: AccessToken
    scopes: frozenset[str]

    def allows(self, resource: str) -> bool:
        return f"system/{resource}.rs" in self.scopes


def _unauthorized(reason: str) -> ApiRefused:
    return ApiRefused(401, "A valid bearer token is required.", reason, WWW_Authenticate='Bearer error="invalid_token"')


def bearer_token(request: HttpRequest) -> str:
    """The token of an ``Authorization: Bearer`` header; raises ApiRefused (401) without one."""
    header = str(request.META.get("HTTP_AUTHORIZATION", ""))
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LENGTH:
        raise ApiRefused(401, "A bearer token is required.", "no_token", WWW_Authenticate="Bearer")
    return token


def authenticate(request: HttpRequest) -> PartnerAuth:
    """The partner and scopes of the request's bearer token; raises ApiRefused (401)."""
    token = bearer_token(request)
    row = AccessToken.objects.select_related("partner").filter(token_hash=token_hash(token)).first()
    if row is None:
        raise _unauthorized("unknown_token")
    if row.revoked_at is not None:
        raise _unauthorized("revoked_token")
    if row.expires_at <= timezone.now():
        raise _unauthorized("expired_token")
    if not row.partner.is_active:
        raise _unauthorized("partner_suspended")
    # The scopes granted then, as far as compliance still allows them now: narrowing a partner's
    # scopes in the admin takes effect on its live tokens at once, not when they expire.
    return PartnerAuth(
        partner=row.partner, token=row, scopes=frozenset(row.scopes) & frozenset(row.partner.allowed_scopes)
    )


def rate_limit(partner: Partner, now: float | None = None) -> None:
    """A fixed window per minute per partner in the cache; raises ApiRefused (429) over the limit."""
    now = time.time() if now is None else now
    window = int(now // RATE_WINDOW_SECONDS)
    key = f"exchange:rate:{partner.pk}:{window}"
    cache.add(key, 0, timeout=RATE_WINDOW_SECONDS * 2)
    try:
        count = cache.incr(key)
    except ValueError:
        # Evicted between add and incr: count this request as the window's first.
        cache.set(key, 1, timeout=RATE_WINDOW_SECONDS * 2)
        count = 1
    if count > partner.rate_limit_per_minute:
        retry_after = max(1, math.ceil((window + 1) * RATE_WINDOW_SECONDS - now))
        raise ApiRefused(429, "Too many requests.", "rate_limited", Retry_After=str(retry_after))


def require_scope(auth: PartnerAuth, resource: str) -> None:
    """Raises ApiRefused (403) unless the token carries ``system/<resource>.rs``."""
    if resource not in RESOURCE_TYPES or not auth.allows(resource):
        raise ApiRefused(403, "The token's scopes do not include this resource.", "scope")


def patient_for_partner(auth: PartnerAuth, patient_id: Any) -> int:
    """The patient's id when a sharing lets the partner see them; raises ApiRefused (404) otherwise,
    for a patient who exists but is not shared exactly as for one who does not exist."""
    try:
        pk = int(patient_id)
    except (TypeError, ValueError):
        pk = 0
    if pk <= 0 or not partner_may_see_patient(auth.partner, pk):
        raise ApiRefused(404, "Not found.", "not_shared")
    return pk


def _record_refusal(request: HttpRequest, refused: ApiRefused, partner: Partner | None) -> None:
    token_refusal_record(
        request=request,
        event=AuthEvent.PARTNER_API_REFUSED,
        error=str(refused.status),
        reason=refused.reason,
        partner=partner,
    )


View = Callable[..., HttpResponse]


def partner_api(resource: str) -> Callable[[View], View]:
    """Decorate an API view: bearer token, rate limit, then the resource's scope (in that order, so a
    flood of wrong-scope calls still counts against the limit). Refusals are recorded."""
    if resource not in RESOURCE_TYPES:
        raise ValueError(f"unknown resource type {resource!r}")

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            partner: Partner | None = None
            try:
                try:
                    auth = authenticate(request)
                except ApiRefused as unauthenticated:
                    # Calls without a valid token count against the client address's window, the
                    # one token requests count in: a flood of forged or stale tokens is slowed down
                    # (and its audit events with it) as a flood of assertions would be.
                    wait = seconds_until_allowed(request)
                    if wait:
                        raise ApiRefused(429, "Too many requests.", "rate_limited", Retry_After=str(wait)) from None
                    raise unauthenticated
                partner = auth.partner
                rate_limit(auth.partner)
                require_scope(auth, resource)
                cast(Any, request).partner_auth = auth
                return view(request, *args, **kwargs)
            except ApiRefused as refused:
                _record_refusal(request, refused, partner)
                return refused.response()

        # Partners have no session: the bearer token is the sign-in (LoginRequiredMiddleware steps aside).
        return login_not_required(wrapper)

    return decorate
