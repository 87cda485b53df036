"""Sign-in state, second factors, and privilege changes: the write path of ``accounts``.

Sign-in has two steps (STYLE.md, after healthchecks' ``_check_2fa``/``login_totp``): after the
password, only a *pending* marker ``{user id, time}`` goes into a fresh session; Django's
``login()`` runs after the one-time code, so no session is ever signed in on a password alone.
"""

from __future__ import annotations

import datetime
import logging
import math
import secrets
import time
from base64 import b32encode
from typing import Any

from axes.helpers import get_client_ip_address, get_client_user_agent
from django.conf import settings
from django.contrib.auth import login as auth_login
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.signals import user_login_failed
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django_otp import login as otp_login

from accounts.models import Department, RecoveryCode, RecoveryCodeDevice, TOTPDevice, User, recovery_code_hash
from accounts.roles import Role
from accounts.signals import AuthEvent, auth_event
from healthcrypt.crypto import blind_index

logger = logging.getLogger(__name__)

PENDING_KEY = "hc_pending_login"
AUTH_AT_KEY = "hc_auth_at"
LAST_SEEN_KEY = "hc_last_seen"
# Set on the request by the idle/unverified sign-out (middleware), read by the sign-out receiver.
LOGOUT_REASON_ATTR = "hc_logout_reason"
VERIFIED_AT_KEY = "hc_otp_at"
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


def auth_event_emit(
    event: AuthEvent,
    *,
    request: HttpRequest | None,
    actor: Any = None,
    target: Any = None,
    username: str = "",
    **detail: Any,
) -> None:
    """Send ``auth_event`` with the request's client address. Receivers that fail abort the caller."""
    auth_event.send(
        sender=User,
        event=event,
        actor=actor,
        target=target,
        username=username_for_records(username)
        if username
        else getattr(target, "username", "") or getattr(actor, "username", ""),
        ip=get_client_ip_address(request) if request is not None else None,
        user_agent=get_client_user_agent(request)[:255] if request is not None else "",
        detail=detail,
    )


# --- Pending (password-only) sign-in --------------------------------------------------------------


def pending_login_start(request: HttpRequest, user: User) -> None:
    """Remember that ``user`` gave the right password; the code step must follow within minutes."""
    request.session.cycle_key()
    request.session[PENDING_KEY] = {"user_id": user.pk, "at": time.time()}


def pending_login_user(request: HttpRequest) -> User | None:
    """The user of a still-valid pending sign-in, or None (expired, unknown or deactivated)."""
    pending = request.session.get(PENDING_KEY)
    if not isinstance(pending, dict):
        return None
    if time.time() - float(pending.get("at", 0)) > settings.LOGIN_CODE_SECONDS:
        pending_login_clear(request)
        return None
    user_id = pending.get("user_id")
    if not isinstance(user_id, int):
        return None
    return User.objects.filter(pk=user_id, is_active=True).first()


def pending_login_clear(request: HttpRequest) -> None:
    request.session.pop(PENDING_KEY, None)


# --- Devices --------------------------------------------------------------------------------------


def totp_device_confirmed(user: User) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("-id").first()


def totp_device_for_enrolment(user: User) -> TOTPDevice:
    """The user's unconfirmed authenticator, created with a fresh random secret when there is none."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-id").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)
    return device


def recovery_codes_issue(*, user: User) -> list[str]:
    """Replace the user's recovery codes with a new set; returns the plaintext, shown once."""
    codes = []
    with transaction.atomic():
        RecoveryCodeDevice.objects.filter(user=user).delete()
        device = RecoveryCodeDevice.objects.create(user=user, name="Recovery codes", confirmed=True)
        for _ in range(settings.RECOVERY_CODE_COUNT):
            raw = b32encode(secrets.token_bytes(5)).decode("ascii").lower()  # 8 chars, 40 bits
            codes.append(f"{raw[:4]}-{raw[4:]}")
        RecoveryCode.objects.bulk_create(RecoveryCode(device=device, code_hash=recovery_code_hash(c)) for c in codes)
    return codes


@transaction.atomic
def otp_enrolment_confirm(*, request: HttpRequest, user: User, device: TOTPDevice, token: str) -> list[str] | None:
    """Confirm an authenticator with its first code; returns new recovery codes, or None if the code is wrong."""
    if not device.verify_token(token):
        return None
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    # One authenticator per person: older ones stop working when a new one is confirmed.
    TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
    codes = recovery_codes_issue(user=user)
    auth_event_emit(AuthEvent.OTP_ENROLLED, request=request, actor=user, target=user)
    return codes


def second_factor_verify(
    user: User, token: str, *, allow_recovery: bool = True
) -> TOTPDevice | RecoveryCodeDevice | None:
    """The device that accepts ``token`` (the authenticator first, then a recovery code), or None."""
    token = token.strip()
    device = totp_device_confirmed(user)
    if device is not None and token.isdigit() and device.verify_token(token):
        return device
    if allow_recovery and not token.isdigit():
        recovery: RecoveryCodeDevice | None = RecoveryCodeDevice.objects.filter(user=user, confirmed=True).first()
        if recovery is not None and recovery.verify_token(token):
            return recovery
    return None


def second_factor_wait(user: User, token: str, *, allow_recovery: bool = True) -> int:
    """Seconds until the device that would check ``token`` accepts a try again (0: now).

    After wrong codes django-otp's throttle refuses every code, right or wrong, for
    OTP_THROTTLE_FACTOR x 2^(failures-1) seconds. A try in that time is not checked, so it is not a
    failure either: the person is told to wait instead.
    """
    token = token.strip()
    device: TOTPDevice | RecoveryCodeDevice | None
    if token.isdigit():
        device = totp_device_confirmed(user)
    elif allow_recovery:
        device = RecoveryCodeDevice.objects.filter(user=user, confirmed=True).first()
    else:
        device = None
    return device_wait(device) if device is not None else 0


def device_wait(device: TOTPDevice | RecoveryCodeDevice) -> int:
    """Seconds until django-otp's throttle lets ``device`` check a code again (0: now)."""
    allowed, data = device.verify_is_allowed()
    if allowed:
        return 0
    locked_until = (data or {}).get("locked_until")
    if not isinstance(locked_until, datetime.datetime):
        return 1
    return max(1, math.ceil((locked_until - timezone.now()).total_seconds()))


def second_factor_failed(request: HttpRequest, user: User, *, stage: str) -> None:
    """Report a wrong code as a failed sign-in, so django-axes counts it toward the lockout."""
    user_login_failed.send(
        sender=__name__, credentials={"username": user.get_username(), "stage": stage}, request=request
    )


def sign_in_complete(request: HttpRequest, user: User, device: TOTPDevice | RecoveryCodeDevice) -> None:
    """Sign the user in for real, after both factors: session, OTP verification, timestamps, event."""
    pending_login_clear(request)
    auth_login(request, user, backend=MODEL_BACKEND)
    otp_login(request, device)
    now = time.time()
    request.session[AUTH_AT_KEY] = now
    request.session[LAST_SEEN_KEY] = now
    request.session[VERIFIED_AT_KEY] = now
    auth_event_emit(AuthEvent.LOGIN, request=request, actor=user, target=user, device=device.__class__.__name__)
    if isinstance(device, RecoveryCodeDevice):
        auth_event_emit(
            AuthEvent.RECOVERY_CODE_USED, request=request, actor=user, target=user, remaining=device.codes.count()
        )


# --- Step-up --------------------------------------------------------------------------------------


def step_up_is_fresh(request: HttpRequest) -> bool:
    """True when a one-time code was entered within STEP_UP_SECONDS."""
    verified_at = request.session.get(VERIFIED_AT_KEY)
    return isinstance(verified_at, int | float) and time.time() - verified_at <= settings.STEP_UP_SECONDS


def step_up_record(request: HttpRequest, device: TOTPDevice | RecoveryCodeDevice) -> None:
    request.session[VERIFIED_AT_KEY] = time.time()
    auth_event_emit(AuthEvent.STEP_UP, request=request, actor=request.user, target=request.user)
    if isinstance(device, RecoveryCodeDevice):
        auth_event_emit(
            AuthEvent.RECOVERY_CODE_USED,
            request=request,
            actor=request.user,
            target=request.user,
            remaining=device.codes.count(),
        )


# --- Account changes ------------------------------------------------------------------------------


@transaction.atomic
def otp_reset(*, actor: User, user: User, request: HttpRequest | None = None) -> None:
    """Remove a person's authenticator and recovery codes (lost phone); they enrol again at next sign-in."""
    TOTPDevice.objects.filter(user=user).delete()
    RecoveryCodeDevice.objects.filter(user=user).delete()
    auth_event_emit(AuthEvent.OTP_RESET, request=request, actor=actor, target=user)


@transaction.atomic
def user_password_change(*, request: HttpRequest, user: User, new_password: str) -> None:
    """Set a new password (already validated) and keep this session signed in."""
    locked = User.objects.select_for_update().get(pk=user.pk)
    locked.set_password(new_password)
    locked.save(update_fields=["password"])
    update_session_auth_hash(request, locked)
    auth_event_emit(AuthEvent.PASSWORD_CHANGED, request=request, actor=user, target=locked)


@transaction.atomic
def user_role_change(
    *,
    actor: User | None,
    user: User,
    role: str,
    department: Department | None = None,
    request: HttpRequest | None = None,
) -> User:
    """Change a user's role (and department), recording who granted what."""
    locked = User.objects.select_for_update().get(pk=user.pk)
    before = {"role": locked.role, "department": locked.department_id}
    locked.role = Role(role)
    locked.department = department
    locked.full_clean()
    locked.save(update_fields=["role", "department"])
    auth_event_emit(
        AuthEvent.ROLE_CHANGED,
        request=request,
        actor=actor,
        target=locked,
        before=before,
        after={"role": locked.role, "department": locked.department_id},
    )
    return locked


def username_for_records(username: str) -> str:
    """What the audit trail and the lockout table keep of a typed username.

    An existing account's username is kept as it is. Anything else (a typo, a patient's name typed
    into the wrong box, a password) is kept only as a keyed hash, so repeated attempts with the same
    string can still be correlated and locked out without the string itself being stored.
    """
    username = username[:150]
    if not username or User.objects.filter(username=username).exists():
        return username
    return "unknown:" + blind_index(username, purpose="accounts.unknown_username")[:16]


def axes_username(request: HttpRequest, credentials: dict[str, Any] | None) -> str:
    """AXES_USERNAME_CALLABLE: lock out by the same recorded form of the username."""
    raw = (credentials or {}).get("username") or request.POST.get("username", "")
    return username_for_records(str(raw))
