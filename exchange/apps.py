from __future__ import annotations

from django.apps import AppConfig


class ExchangeConfig(AppConfig):
    name = "exchange"
    label = "exchange"
    verbose_name = "Exchange"

    def ready(self) -> None:
        from exchange import checks  # noqa: F401  (registers the security checks)
        from exchange.history import register_change_history

        register_change_history()
