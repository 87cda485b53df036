"""Turn Django's and django-axes' own sign-in signals into ``auth_event`` (connected in apps.py)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from accounts.models import User
from accounts.services import LOGOUT_REASON_ATTR, auth_event_emit
from accounts.signals import AuthEvent


def on_user_login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    # Only the username is taken from the credentials (Django has already masked the password).
    username = str(credentials.get("username", ""))[:150]
    event = AuthEvent.OTP_FAILED if credentials.get("stage") else AuthEvent.LOGIN_FAILED
    target = User.objects.filter(username=username).first() if username else None
    auth_event_emit(
        event, request=request, target=target, username=username, stage=credentials.get("stage", "password")
    )


def on_user_logged_out(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if user is None:
        return
    reason = getattr(request, LOGOUT_REASON_ATTR, "")
    event = AuthEvent.IDLE_LOGOUT if reason else AuthEvent.LOGOUT
    auth_event_emit(event, request=request, actor=user, target=user, reason=reason or "user")


def on_user_locked_out(
    sender: Any, request: HttpRequest | None, username: str | None, ip_address: str | None, **kwargs: Any
) -> None:
    target = User.objects.filter(username=username).first() if username else None
    auth_event_emit(AuthEvent.LOCKOUT, request=request, target=target, username=username or "")
