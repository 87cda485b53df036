"""The per-transaction actor marker that tells the database's change triggers "this is the application".

Every write transaction of the write path sets ``healthcrypt.actor`` (a transaction-local setting on
PostgreSQL) before it changes a clinical row; the triggers of audit/guards.py copy it, with the
transaction id, into each ``audit_directchange`` row. The marker carries a MAC over the transaction
id and the actor made with ``AUDIT_MARKER_KEY`` (healthcrypt/markers.py), which the database does not
hold: a marker typed in psql, or copied from another transaction, does not verify when the rows are
sealed (audit/sealing.py), and the change counts as made straight in the database.
SQLite has no such triggers, so this is a no-op there.
"""

from __future__ import annotations

from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections

from healthcrypt.markers import make_marker


def mark_actor(actor: Any, *, job: str = "", using: str = DEFAULT_DB_ALIAS) -> None:
    """Mark the current transaction as the application's, acting for ``actor`` (or a named system job).

    Call it inside the transaction that makes the change: the marker names that transaction's id
    and is worthless in any other.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        return
    if actor is not None and getattr(actor, "pk", None) is not None:
        who = f"user:{actor.pk}"
    else:
        who = f"system:{job or 'app'}"
    with connection.cursor() as cursor:
        # txid_current() assigns the transaction id now if the transaction has none yet; the
        # trigger reads the same value (the top-level id, also from inside a savepoint).
        cursor.execute("SELECT pg_catalog.txid_current()")
        (txid,) = cursor.fetchone()
        cursor.execute(
            "SELECT pg_catalog.set_config('healthcrypt.actor', %s, true)", [make_marker(actor=who, txid=txid)]
        )


def marked_migration(label: str) -> Any:
    """A migration operation that marks its transaction as the application's (``system:migrate:<label>``).

    Put it first (forwards) and last (backwards runs the operations in reverse) in a migration that
    changes a clinical table's schema once the guards exist: the DDL event trigger copies the marker
    (audit/guards.py RECORD_DDL), and the change seals as the application's instead of alerting as
    DDL typed straight into the database. A migration runs in one transaction on PostgreSQL, so
    one mark covers all its statements; on SQLite it does nothing.
    """
    from django.db import migrations  # here: models import this module, and migrations import models

    def mark(apps: Any, schema_editor: Any) -> None:
        mark_actor(None, job=f"migrate:{label}", using=schema_editor.connection.alias)

    return migrations.RunPython(mark, mark, elidable=False)
