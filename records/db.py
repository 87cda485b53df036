"""The per-transaction actor marker that tells the database's change triggers "this is the application".

Every write transaction of the write path sets ``healthcrypt.actor`` (a transaction-local setting on
PostgreSQL) before it changes a clinical row; the triggers of audit/guards.py copy it into each
``audit_directchange`` row. A change that arrives without it was made straight in the database.
SQLite has no such triggers, so this is a no-op there.
"""

from __future__ import annotations

from typing import Any

from django.db import connection


def mark_actor(actor: Any, *, job: str = "") -> None:
    """Mark the current transaction as the application's, acting for ``actor`` (or a named system job)."""
    if connection.vendor != "postgresql":
        return
    if actor is not None and getattr(actor, "pk", None) is not None:
        marker = f"user:{actor.pk}"
    else:
        marker = f"system:{job or 'app'}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('healthcrypt.actor', %s, true)", [marker])
