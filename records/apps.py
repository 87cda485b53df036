from __future__ import annotations

from django.apps import AppConfig


class RecordsConfig(AppConfig):
    name = "records"
    verbose_name = "Clinical record"

    def ready(self) -> None:
        from functools import partial

        from accounts.dashboards import run_panels_with
        from records import dashboard_panels
        from records.selectors.access import run_together

        dashboard_panels.register()
        # A dashboard's record panels: one access event per patient for the page (DESIGN.md §4).
        run_panels_with(partial(run_together, page="dashboard"))
