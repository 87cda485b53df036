"""SQL that gives the application's PostgreSQL role only what it needs: no UPDATE, DELETE or TRUNCATE
on the audit tables, no DDL. Used by ``manage.py audit_db_role`` and quoted in docs/operations/database-roles.md.
"""

from __future__ import annotations

from psycopg import sql

from audit.guards import GUARDED_TABLES


def grant_statements(role: str) -> list[sql.Composed]:
    """Statements run by the database owner (who also runs migrations) for the application role ``role``."""
    r = sql.Identifier(role)
    statements = [
        sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(r),
        sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(r),
        sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(r),
    ]
    for table in GUARDED_TABLES:
        statements.append(sql.SQL("REVOKE UPDATE, DELETE, TRUNCATE ON {} FROM {}").format(sql.Identifier(table), r))
    return statements
