from __future__ import annotations

from django.apps import AppConfig


class ResearchConfig(AppConfig):
    name = "research"
    label = "research"
    verbose_name = "Research"

    def ready(self) -> None:
        from research.history import register_change_history

        register_change_history()
