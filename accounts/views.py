"""Sign-in (password, then a one-time code), enrolment, step-up, password change, lockouts, dashboards."""

from __future__ import annotations

import logging
from typing import Any, cast

from axes.handlers.proxy import AxesProxyHandler
from axes.models import AccessAttempt
from axes.utils import reset as axes_reset
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.core.validators import validate_ipv46_address
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.dashboards import panels_for
from accounts.decorators import capability_required
from accounts.forms import CodeForm, PasswordChangeWithCodeForm, PasswordStepForm
from accounts.lockout import locked_addresses
from accounts.models import User
from accounts.otp import qr_svg
from accounts.roles import Capability, policy_for
from accounts.services import (
    auth_event_emit,
    device_wait,
    otp_enrolment_confirm,
    pending_login_clear,
    pending_login_start,
    pending_login_user,
    second_factor_failed,
    second_factor_verify,
    second_factor_wait,
    sign_in_complete,
    step_up_record,
    totp_device_confirmed,
    totp_device_for_enrolment,
    user_password_change,
)
from accounts.signals import AuthEvent
from healthcrypt.views import render_error

logger = logging.getLogger(__name__)

NEXT_KEY = "hc_next"
WRONG_CODE = "That code is not right, or it has already been used. Codes change every 30 seconds."
THROTTLED = (
    "Too many wrong codes in a row: wait {seconds} second{s}, then enter the code your app shows. "
    "This try was not counted."
)
START_AGAIN = "Your sign-in took too long or was not started. Please enter your password again."


def _safe_next(request: HttpRequest, candidate: str | None) -> str:
    """``candidate`` if it is a path on this site, else the dashboard: ``next`` never leaves the site."""
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return reverse("accounts:dashboard")


def _lockout(request: HttpRequest, user: User) -> HttpResponse:
    # AxesMiddleware turns a request marked as locked out into the lockout page (429).
    pending_login_clear(request)
    # django-axes reads these two attributes it puts on the request itself.
    vars(request).update(axes_locked_out=True, axes_credentials={"username": user.get_username()})
    return HttpResponse(status=429)


def _is_locked(request: HttpRequest, user: User) -> bool:
    return bool(AxesProxyHandler.is_locked(request, {"username": user.get_username()}))


def _throttled(form: Any, wait: int) -> bool:
    """True (with a message on the form) while django-otp's throttle would refuse any code."""
    if wait:
        form.add_error("otp_token", THROTTLED.format(seconds=wait, s="" if wait == 1 else "s"))
    return wait > 0


def _wrong_code(
    request: HttpRequest, user: User, form: Any, *, stage: str, sign_out: bool = False
) -> HttpResponse | None:
    """Count a wrong code toward the lockout; the lockout response if it was the last straw, else None."""
    second_factor_failed(request, user, stage=stage)
    if getattr(request, "axes_locked_out", False):
        if sign_out:
            logout(request)
        return _lockout(request, user)
    form.add_error("otp_token", WRONG_CODE)
    return None


def _pending_user_or_restart(request: HttpRequest) -> User | HttpResponse:
    """The user of a pending sign-in, or a redirect back to the password step with a message."""
    user = pending_login_user(request)
    if user is None:
        messages.error(request, START_AGAIN)
        return redirect("accounts:login")
    return user


@login_not_required
@sensitive_post_parameters("password")
@require_http_methods(["GET", "POST"])
def login_password(request: HttpRequest) -> HttpResponse:
    """Step one: username and password. Nothing is signed in yet."""
    if request.user.is_authenticated:
        return redirect(_safe_next(request, request.GET.get("next")))
    form = PasswordStepForm(request, data=request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.get_user()
        pending_login_start(request, user)
        request.session[NEXT_KEY] = _safe_next(request, request.POST.get("next") or request.GET.get("next"))
        if totp_device_confirmed(user) is None:
            return redirect("accounts:enrol")
        return redirect("accounts:login_code")
    return render(request, "registration/login.html", {"form": form, "next": request.GET.get("next", "")})


@login_not_required
@sensitive_post_parameters("otp_token")
@require_http_methods(["GET", "POST"])
def login_code(request: HttpRequest) -> HttpResponse:
    """Step two: the one-time code (or a recovery code). A wrong code counts toward the lockout."""
    user = _pending_user_or_restart(request)
    if isinstance(user, HttpResponse):
        return user
    if totp_device_confirmed(user) is None:
        return redirect("accounts:enrol")
    if _is_locked(request, user):
        return _lockout(request, user)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        token = form.cleaned_data["otp_token"]
        if _throttled(form, second_factor_wait(user, token)):
            pass
        elif (device := second_factor_verify(user, token)) is not None:
            next_url = request.session.get(NEXT_KEY) or reverse("accounts:dashboard")
            sign_in_complete(request, user, device)
            return redirect(_safe_next(request, next_url))
        elif (locked := _wrong_code(request, user, form, stage="login")) is not None:
            return locked
    return render(request, "accounts/login_code.html", {"form": form, "username": user.get_username()})


@login_not_required
@sensitive_post_parameters("otp_token")
@require_http_methods(["GET", "POST"])
def enrol(request: HttpRequest) -> HttpResponse:
    """First sign-in: scan a QR code, confirm with a first code, receive recovery codes once."""
    user = _pending_user_or_restart(request)
    if isinstance(user, HttpResponse):
        return user
    if totp_device_confirmed(user) is not None:
        # Replacing an authenticator needs an administrator to remove the old one first.
        return redirect("accounts:login_code")
    if _is_locked(request, user):
        return _lockout(request, user)
    device = totp_device_for_enrolment(user)
    form = CodeForm(request.POST or None, allow_recovery=False)
    if request.method == "POST" and form.is_valid() and not _throttled(form, device_wait(device)):
        token = form.cleaned_data["otp_token"]
        codes = otp_enrolment_confirm(request=request, user=user, device=device, token=token)
        if codes is not None:
            next_url = request.session.get(NEXT_KEY) or reverse("accounts:dashboard")
            sign_in_complete(request, user, device)
            # Shown in this one response and never again: only hashes are stored.
            return render(
                request, "accounts/recovery_codes.html", {"codes": codes, "next": _safe_next(request, next_url)}
            )
        if (locked := _wrong_code(request, user, form, stage="enrolment")) is not None:
            return locked
    secret = device.base32_secret
    context = {
        "form": form,
        "qr_svg": qr_svg(device.config_url),
        "secret_groups": [secret[i : i + 4] for i in range(0, len(secret), 4)],
        "username": user.get_username(),
        "issuer": settings.OTP_ISSUER,
    }
    return render(request, "accounts/enrol.html", context)


@sensitive_post_parameters("otp_token")
@require_http_methods(["GET", "POST"])
def step_up(request: HttpRequest) -> HttpResponse:
    """Ask a signed-in person for a fresh code before clinical data, then return them to it."""
    next_url = _safe_next(request, request.POST.get("next") or request.GET.get("next"))
    user = cast(User, request.user)  # LoginRequiredMiddleware lets only signed-in users here
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        token = form.cleaned_data["otp_token"]
        if _throttled(form, second_factor_wait(user, token)):
            pass
        elif (device := second_factor_verify(user, token)) is not None:
            step_up_record(request, device)
            return redirect(next_url)
        elif (locked := _wrong_code(request, user, form, stage="step_up", sign_out=True)) is not None:
            return locked
    return render(request, "accounts/step_up.html", {"form": form, "next": next_url})


@sensitive_post_parameters("old_password", "new_password1", "new_password2", "otp_token")
@require_http_methods(["GET", "POST"])
def password_change(request: HttpRequest) -> HttpResponse:
    """Change one's password: the current password and a code from the authenticator are both needed."""
    user = cast(User, request.user)
    form = PasswordChangeWithCodeForm(user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        token = form.cleaned_data["otp_token"]
        if _throttled(form, second_factor_wait(user, token, allow_recovery=False)):
            pass
        elif second_factor_verify(user, token, allow_recovery=False) is None:
            if (locked := _wrong_code(request, user, form, stage="password_change", sign_out=True)) is not None:
                return locked
        else:
            user_password_change(request=request, user=user, new_password=form.cleaned_data["new_password1"])
            messages.success(request, "Your password has been changed.")
            return redirect("accounts:dashboard")
    return render(request, "accounts/password_change.html", {"form": form})


@require_GET
@capability_required(Capability.MANAGE_LOCKOUTS)
def lockouts(request: HttpRequest) -> HttpResponse:
    """Security's list of failed sign-in records, locked ones first."""
    limit = settings.AXES_FAILURE_LIMIT
    attempts = AccessAttempt.objects.order_by("-failures_since_start", "-attempt_time")
    page = Paginator(attempts, 50).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "limit": limit,
        "address_limit": settings.AXES_ADDRESS_FAILURE_LIMIT,
        "addresses": locked_addresses(),
    }
    return render(request, "accounts/lockouts.html", context)


@require_POST
@capability_required(Capability.MANAGE_LOCKOUTS)
def lockout_clear(request: HttpRequest, attempt_id: int) -> HttpResponse:
    """Clear the failures of one username + address, so that person may sign in again now."""
    attempt = get_object_or_404(AccessAttempt, pk=attempt_id)
    username, ip = attempt.username, attempt.ip_address
    axes_reset(username=username, ip=ip)
    target = User.objects.filter(username=username).first()
    auth_event_emit(
        AuthEvent.LOCKOUT_CLEARED,
        request=request,
        actor=request.user,
        target=target,
        username=username or "",
        cleared_ip=ip,
    )
    messages.success(request, f"Sign-in failures for {username} from {ip} were cleared.")
    return redirect("accounts:lockouts")


@require_POST
@capability_required(Capability.MANAGE_LOCKOUTS)
def lockout_clear_address(request: HttpRequest) -> HttpResponse:
    """Clear every failure from one address locked for password spraying."""
    ip = request.POST.get("ip_address", "").strip()
    try:
        validate_ipv46_address(ip)
    except ValidationError:
        return render_error(request, 400, "Bad request", "That is not an address on the lockout list.")
    cleared = axes_reset(ip=ip)
    auth_event_emit(AuthEvent.LOCKOUT_CLEARED, request=request, actor=request.user, cleared_ip=ip, scope="address")
    messages.success(request, f"Sign-in failures from {ip} were cleared ({cleared} record(s)).")
    return redirect("accounts:lockouts")


@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    """Send each person to the dashboard of their role."""
    policy = policy_for(request.user)
    if policy is None:
        if request.user.is_superuser:
            # Operators have no clinical dashboard; the admin is their tool.
            return redirect("admin:index")
        logger.warning("Signed-in account without a usable role: user_id=%s", request.user.pk)
        raise PermissionDenied("This account has no role. Ask an administrator to assign one.")
    context = {
        "policy": policy,
        "opens_charts": Capability.VIEW_CHART in policy.capabilities,
        "panels": panels_for(request, policy.role),
    }
    return render(request, f"accounts/dashboards/{policy.role.value}.html", context)
