"""The write path of the partner registry: issuing, revoking, suspending; each one an auth event.

Token values never reach a log or an event: only the partner, the scopes, the token's hash prefix
(enough to find its row in the admin) and, for refusals, the internal reason.
"""

from __future__ import annotations

import datetime
import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from axes.helpers import get_client_ip_address, get_client_user_agent
from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from accounts.signals import AuthEvent, auth_event
from exchange.partners.models import AccessToken, Partner, is_client_id

# SMART Backend Services: "the access token SHALL have a lifetime no greater than five minutes".
MAX_TOKEN_SECONDS = 300
# 256 bits of randomness: a token cannot be guessed, and its unsalted SHA-256 is a safe lookup key.
TOKEN_BYTES = 32


def token_seconds() -> int:
    """The access tokens' lifetime in seconds (setting PARTNER_TOKEN_SECONDS, at most five minutes)."""
    return max(1, min(int(getattr(settings, "PARTNER_TOKEN_SECONDS", MAX_TOKEN_SECONDS)), MAX_TOKEN_SECONDS))


def token_hash(token: str) -> str:
    """The SHA-256 of a bearer token, as stored and as looked up."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


class ReplayedAssertion(Exception):
    """The client assertion's jti was already used by this partner."""


@dataclass(frozen=True)
class IssuedToken:
    token: str  # the only copy; given to the partner, never stored
    row: AccessToken


def auth_event_emit(
    event: AuthEvent, *, request: HttpRequest | None, username: str, actor: Any = None, **detail: Any
) -> None:
    """Send ``auth_event`` for a partner (accounts' helper would hash the label as an unknown username).
    ``username`` is always :func:`partner_label` of a registered client_id or ``partner:unknown``."""
    auth_event.send(
        sender=Partner,
        event=event,
        actor=actor,
        target=None,
        username=username,
        ip=get_client_ip_address(request) if request is not None else None,
        user_agent=get_client_user_agent(request)[:255] if request is not None else "",
        detail=detail,
    )


def partner_label(client_id: str) -> str:
    """What the auth event keeps as its username: ``partner:<client_id>`` (never a patient's data)."""
    return f"partner:{client_id}"[:150]


def token_issue(
    *,
    partner: Partner,
    scopes: Sequence[str],
    jti: str,
    assertion_expires_at: datetime.datetime,
    request: HttpRequest | None,
) -> IssuedToken:
    """Issue a bearer token for ``scopes`` and record it; raises ReplayedAssertion for a used jti."""
    now = timezone.now()
    token = secrets.token_urlsafe(TOKEN_BYTES)
    try:
        with transaction.atomic():
            row = AccessToken.objects.create(
                partner=partner,
                token_hash=token_hash(token),
                scopes=list(scopes),
                issued_at=now,
                expires_at=now + datetime.timedelta(seconds=token_seconds()),
                assertion_jti=jti,
                assertion_expires_at=assertion_expires_at,
            )
    except IntegrityError as exc:
        # The unique (partner, jti) constraint: a concurrent or earlier use of the same assertion.
        raise ReplayedAssertion from exc
    auth_event_emit(
        AuthEvent.PARTNER_TOKEN_ISSUED,
        request=request,
        username=partner_label(partner.client_id),
        partner_id=partner.pk,
        token=row.hash_prefix,
        scopes=" ".join(scopes),
        expires_in=token_seconds(),
    )
    return IssuedToken(token=token, row=row)


def token_refusal_record(
    *, request: HttpRequest | None, event: AuthEvent, error: str, reason: str, client_id: str = "", partner: Any = None
) -> None:
    """Record a refused token request or API call: the OAuth error, our internal reason, the partner
    if it is known. ``client_id`` as typed by the caller is kept only if it names a partner."""
    if partner is not None:
        label = partner_label(partner.client_id)
    elif client_id and is_client_id(client_id) and Partner.objects.filter(client_id=client_id).exists():
        label = partner_label(client_id)
    else:
        label = "partner:unknown"
    detail: dict[str, Any] = {"error": error, "reason": reason}
    if partner is not None:
        detail["partner_id"] = partner.pk
    auth_event_emit(event, request=request, username=label, **detail)


def token_revoke(*, actor: Any, tokens: Iterable[AccessToken], request: HttpRequest | None) -> int:
    """Revoke tokens (admin); each revocation is an auth event. Returns how many were revoked now."""
    count = 0
    now = timezone.now()
    with transaction.atomic():
        for row in AccessToken.objects.select_for_update().filter(
            pk__in=[t.pk for t in tokens], revoked_at__isnull=True
        ):
            row.revoked_at = now
            row.save(update_fields=["revoked_at"])
            auth_event_emit(
                AuthEvent.PARTNER_TOKEN_REVOKED,
                request=request,
                actor=actor,
                username=partner_label(row.partner.client_id),
                partner_id=row.partner_id,
                token=row.hash_prefix,
            )
            count += 1
    return count


def partner_status_change(*, actor: Any, partner: Partner, status: str, request: HttpRequest | None) -> bool:
    """Suspend or reactivate a partner (admin). Suspending also revokes its live tokens at once.
    Returns False when the partner already had that status."""
    with transaction.atomic():
        locked = Partner.objects.select_for_update().get(pk=partner.pk)
        if locked.status == status:
            return False
        locked.status = Partner.Status(status)
        locked.full_clean()
        locked.save(update_fields=["status", "updated_at"])
        event = AuthEvent.PARTNER_SUSPENDED if status == Partner.Status.SUSPENDED else AuthEvent.PARTNER_REACTIVATED
        auth_event_emit(
            event, request=request, actor=actor, username=partner_label(locked.client_id), partner_id=locked.pk
        )
        if status == Partner.Status.SUSPENDED:
            live = AccessToken.objects.filter(partner=locked, revoked_at__isnull=True, expires_at__gt=timezone.now())
            token_revoke(actor=actor, tokens=list(live), request=request)
    partner.status = locked.status
    return True


def _keys(jwks: Any) -> list[Any]:
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    return [key for key in keys if isinstance(key, dict)] if isinstance(keys, list) else []


def partner_keys_changed(*, actor: Any, partner: Partner, before: Any, request: HttpRequest | None) -> int:
    """The partner's registered keys were edited (admin). When a key registered before is gone or
    different, its live tokens are revoked: they may have been issued on an assertion signed with a key
    that was withdrawn because it leaked. Adding a key (the first step of a rotation) revokes nothing.
    The partner signs a new assertion with a key still registered and gets a new token. Returns how
    many tokens were revoked."""
    now_registered = _keys(partner.jwks)
    if all(key in now_registered for key in _keys(before)):
        return 0
    live = AccessToken.objects.filter(partner=partner, revoked_at__isnull=True, expires_at__gt=timezone.now())
    return token_revoke(actor=actor, tokens=list(live), request=request)
