"""The Django admin is the compliance officers' tool; only they and operators may enter it.

It lives in accounts because the role table decides who enters; ``accounts.apps.AccountsAdminConfig``
makes it Django's default admin site (``INSTALLED_APPS``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

from django.contrib.admin import ModelAdmin
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django_otp.admin import OTPAdminSite

from accounts.roles import Capability, has_capability


class NoExistenceLeak(ModelAdmin[Any]):
    """Refuse (403) before looking an object up when the person may not see the model at all.

    Django's admin redirects to its index for an id that does not exist but refuses an existing one
    a person may not view, which tells a probing user which ids exist. Checked first, the answer is
    the same for both. Someone who may view the model keeps Django's usual behaviour.
    """

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        return super().change_view(request, object_id, form_url, extra_context)

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        return super().history_view(request, object_id, extra_context)

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_delete_permission(request):
            raise PermissionDenied
        return super().delete_view(request, object_id, extra_context)


# Apps whose tables the admin lists in another app's section (by app label; accounts imports neither):
# django-auditlog's change history is part of the audit trail, so there is one audit section.
MERGED_SECTIONS = {"auditlog": "audit"}


class HealthcryptAdminSite(OTPAdminSite):
    """django-otp's admin site (a verified second factor is required), with the role table on top."""

    site_header = "Healthcrypt compliance"
    site_title = "Healthcrypt compliance"
    index_title = "Compliance and operations"

    def __init__(self, name: str = "admin") -> None:
        # OTPAdminSite names itself "otpadmin"; keep the usual "admin" namespace.
        super().__init__(name)

    def register(
        self,
        model_or_iterable: type[Model] | Iterable[type[Model]],
        admin_class: type[ModelAdmin[Any]] | None = None,
        **options: Any,
    ) -> None:
        """Register as usual, with every admin class (the apps' and third parties') made leak-free."""
        admin_class = admin_class or ModelAdmin
        if not issubclass(admin_class, NoExistenceLeak):
            admin_class = type(
                admin_class.__name__, (NoExistenceLeak, admin_class), {"__module__": admin_class.__module__}
            )
        super().register(model_or_iterable, admin_class, **options)

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[Any]:
        """The index's sections (and the sidebar's), with each app of MERGED_SECTIONS moved into its
        target's section, sorted by name there, on the index and on the target's own page alike."""
        app_list: list[Any] = list(super().get_app_list(request, app_label))
        for source, target in MERGED_SECTIONS.items():
            section = next((app for app in app_list if app["app_label"] == target), None)
            moved = self._build_app_dict(request, source).get(source) if section is not None else None
            if section is None or not moved:
                continue
            section["models"] = sorted([*section["models"], *moved["models"]], key=lambda model: model["name"])
            app_list = [app for app in app_list if app["app_label"] != source]
        return app_list

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
