"""django-auditlog's change history for the partner registry (admin and shell writes), like the
clinical and account tables (audit/apps.py): the token hash is left out, nothing else is secret
(a JWKS holds public keys only, refused otherwise by exchange/partners/jwks.py)."""

from __future__ import annotations


def register_change_history() -> None:
    from auditlog.registry import auditlog

    from exchange.partners.models import AccessToken, DataSharing, Partner

    for model, excluded in ((Partner, []), (DataSharing, []), (AccessToken, ["token_hash"])):
        if not auditlog.contains(model):
            auditlog.register(model, exclude_fields=excluded)
