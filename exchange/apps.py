from __future__ import annotations

from django.apps import AppConfig


class ExchangeConfig(AppConfig):
    name = "exchange"
    label = "exchange"
    verbose_name = "Exchange"

    def ready(self) -> None:
        from exchange import checks  # noqa: F401  (registers the security checks)
        from exchange.api.responses import operation_outcome
        from exchange.history import register_change_history
        from healthcrypt.views import register_api_errors

        register_change_history()
        # Django's own errors under the partner API (a CSRF check, too many fields) as OperationOutcomes.
        register_api_errors("/fhir/r4/", lambda status, message: operation_outcome(status, message))
