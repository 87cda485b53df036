"""Signals the audit app sends, for notifiers (STYLE.md: "emit an access_flagged signal")."""

from __future__ import annotations

from django.dispatch import Signal

# kwargs: alert (audit.models.Alert, just raised). Sent once per alert, inside the transaction that
# raised it; notifiers that talk to the outside world wait for the commit (transaction.on_commit).
access_flagged = Signal()
