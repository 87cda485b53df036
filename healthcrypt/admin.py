"""The Django admin is the compliance officers' tool; only they and operators may enter it."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from accounts.roles import Capability, has_capability


class HealthcryptAdminSite(admin.AdminSite):
    site_header = "Healthcrypt compliance"
    site_title = "Healthcrypt compliance"
    index_title = "Compliance and operations"

    def has_permission(self, request: HttpRequest) -> bool:
        # is_staff alone is not enough: the role table decides (DESIGN.md §3).
        user = request.user
        return bool(user.is_active and user.is_staff and has_capability(user, Capability.ADMIN_SITE))
