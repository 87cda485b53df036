from __future__ import annotations

from django.apps import AppConfig


class BaselineConfig(AppConfig):
    name = "bench.load.baseline"
    label = "loadbaseline"
    default_auto_field = "django.db.models.BigAutoField"
