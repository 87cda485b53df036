from __future__ import annotations

from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class HealthcryptConfig(AppConfig):
    name = "healthcrypt"
    verbose_name = "Healthcrypt"

    def ready(self) -> None:
        # Registers the security system checks.
        from healthcrypt import checks  # noqa: F401


class HealthcryptAdminConfig(AdminConfig):
    default_site = "healthcrypt.admin.HealthcryptAdminSite"
