"""SQL that gives the application's PostgreSQL role only what it needs: no DELETE or TRUNCATE and no
UPDATE but the sealer's (chain columns only) on the audit tables, nothing at all but SELECT on ``audit_directchange`` (the guards' definer trigger
writes it), only ``last_seq``/``last_hash`` of the chain heads, no DDL. Used by ``manage.py
audit_db_role`` and quoted in docs/operations/database-roles.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import sql

from audit.guards import CHAIN_COLUMNS, GUARDED_TABLES, SEALABLE_TABLES, partition_names
from audit.partitions import PARTITIONED_TABLES

DIRECT_CHANGES = "audit_directchange"
CHAIN_HEADS = "audit_auditchainhead"


def grant_statements(role: str, partitions: Sequence[str] = (), *, sealer: str | None = None) -> list[sql.Composed]:
    """Statements run by the database owner (who also runs migrations) for the application role ``role``.

    ``partitions``: the partitions of the event tables that exist now (:func:`event_partitions`).
    ``sealer``: a separate role for ``seal_audit`` (and ``verify_audit``, which seals first). It gets the
    application's grants plus the two UPDATEs sealing needs (chain columns, chain heads); ``role`` then
    gets neither, so the web workers' login cannot place a row in a chain or move a head at all.
    """
    statements = _role_statements(role, partitions, seals=sealer is None)
    if sealer is not None:
        statements += _role_statements(sealer, partitions, seals=True)
    return statements


def _role_statements(role: str, partitions: Sequence[str], *, seals: bool) -> list[sql.Composed]:
    r = sql.Identifier(role)
    statements = [
        sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(r),
        # No objects of its own in the schema: nothing for a missed schema qualification to find.
        sql.SQL("REVOKE CREATE ON SCHEMA public FROM {}").format(r),
        sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(r),
        sql.SQL("REVOKE TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA public FROM {}").format(r),
        sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(r),
    ]
    for table in GUARDED_TABLES:
        statements.append(sql.SQL("REVOKE UPDATE, DELETE, TRUNCATE ON {} FROM {}").format(sql.Identifier(table), r))
    # The sealer (audit/sealer.py) gives an unsealed event its place in the chain: UPDATE of the chain
    # columns only; the append-only trigger allows it only on an unsealed row and only for those columns.
    # (The table-level REVOKE UPDATE above also took back any column grant of an earlier run.)
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in CHAIN_COLUMNS)
    for table in SEALABLE_TABLES if seals else ():
        statements.append(sql.SQL("GRANT UPDATE ({}) ON {} TO {}").format(columns, sql.Identifier(table), r))
    # Written by the guards' SECURITY DEFINER trigger only: a forged row would be a false alarm.
    statements.append(
        sql.SQL("REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {} FROM {}").format(sql.Identifier(DIRECT_CHANGES), r)
    )
    # Extending a chain moves its head: UPDATE of the two link columns only, never DELETE, and never
    # a change of which chain a head belongs to. A head moved by hand no longer matches its chain's
    # last event (verify_audit); a head moved back together with a deleted tail needs the owner, and
    # the signed checkpoints catch that (audit/checkpoints.py).
    heads = sql.Identifier(CHAIN_HEADS)
    statements.append(sql.SQL("REVOKE UPDATE, DELETE, TRUNCATE ON {} FROM {}").format(heads, r))
    if seals:
        statements.append(sql.SQL("GRANT UPDATE (last_seq, last_hash) ON {} TO {}").format(heads, r))
    # The monthly partitions of the event tables (audit/partitions.py) are tables of the schema, so
    # the grant on ALL TABLES above reached them. The role reaches their rows through the partitioned
    # table, where its rights are checked; on a partition named directly it needs nothing. (Partitions
    # made later by audit_partitions grant nothing to begin with.)
    for partition in partitions:
        statements.append(sql.SQL("REVOKE ALL ON {} FROM {}").format(sql.Identifier(partition), r))
    return statements


def event_partitions(cursor: Any) -> list[str]:
    """Every partition of the partitioned event tables (none on a database not yet migrated)."""
    return [name for table in PARTITIONED_TABLES for name in partition_names(cursor, table)]
