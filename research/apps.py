from __future__ import annotations

from django.apps import AppConfig


class ResearchConfig(AppConfig):
    name = "research"
    label = "research"
    verbose_name = "Research"

    def ready(self) -> None:
        from research import dashboard_panels
        from research.history import register_change_history

        register_change_history()
        dashboard_panels.register()
