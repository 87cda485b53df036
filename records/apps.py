from __future__ import annotations

from django.apps import AppConfig


class RecordsConfig(AppConfig):
    name = "records"
    verbose_name = "Clinical record"

    def ready(self) -> None:
        from records import dashboard_panels

        dashboard_panels.register()
