from __future__ import annotations

from django.apps import AppConfig


class HealthcryptConfig(AppConfig):
    name = "healthcrypt"
    verbose_name = "Healthcrypt"

    def ready(self) -> None:
        # Registers the security system checks.
        from healthcrypt import checks  # noqa: F401
