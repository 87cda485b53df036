"""The Django admin is the compliance officers' tool; only they and operators may enter it.

It lives in accounts because the role table decides who enters; ``accounts.apps.AccountsAdminConfig``
makes it Django's default admin site (``INSTALLED_APPS``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django_otp.admin import OTPAdminSite

from accounts.roles import Capability, has_capability


class HealthcryptAdminSite(OTPAdminSite):
    """django-otp's admin site (a verified second factor is required), with the role table on top."""

    site_header = "Healthcrypt compliance"
    site_title = "Healthcrypt compliance"
    index_title = "Compliance and operations"

    def __init__(self, name: str = "admin") -> None:
        # OTPAdminSite names itself "otpadmin"; keep the usual "admin" namespace.
        super().__init__(name)

    def has_permission(self, request: HttpRequest) -> bool:
        # is_staff alone is not enough: the role table decides (DESIGN.md §3), and OTPAdminSite
        # requires a verified second factor.
        return bool(super().has_permission(request) and has_capability(request.user, Capability.ADMIN_SITE))

    def login(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        # One sign-in for everything: password + code, lockout and audit as everywhere else.
        if request.user.is_authenticated:
            # Signed in, but not allowed here.
            return redirect("accounts:dashboard")
        next_url = request.GET.get("next") or reverse("admin:index")
        return redirect(f"{reverse('accounts:login')}?{urlencode({'next': next_url})}")
