"""``manage.py audit_db_role``: the grants that keep the application's own PostgreSQL role from rewriting
the audit trail; refused where there are no roles (SQLite)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from audit.guards import GUARDED_TABLES

pytestmark = pytest.mark.django_db


@pytest.mark.skipif(connection.vendor == "postgresql", reason="SQLite has no roles to grant to")
def test_audit_db_role_is_refused_where_there_are_no_roles() -> None:
    with pytest.raises(CommandError, match="PostgreSQL only"):
        call_command("audit_db_role", "healthcrypt_app", stdout=StringIO())


@pytest.mark.skipif(connection.vendor != "postgresql", reason="roles and grants exist on PostgreSQL only")
def test_audit_db_role_prints_the_grants_without_applying_them() -> None:
    out = StringIO()
    # Without --apply nothing runs: granting to this role, which does not exist, would fail.
    call_command("audit_db_role", 'app"; DROP ROLE postgres; --', stdout=out)
    lines = out.getvalue().splitlines()
    # The role name is quoted as an identifier, whatever it holds.
    assert 'GRANT USAGE ON SCHEMA public TO "app""; DROP ROLE postgres; --";' in lines
    for table in GUARDED_TABLES:
        assert any(line.startswith(f'REVOKE UPDATE, DELETE, TRUNCATE ON "{table}" FROM ') for line in lines), table
    assert any(line.startswith('GRANT UPDATE (last_seq, last_hash) ON "audit_auditchainhead"') for line in lines)
    # Each event table's partitions (audit/partitions.py): nothing on a partition named directly.
    for table in ("audit_accessevent", "audit_changeevent", "audit_autheventrecord"):
        assert any(line.startswith(f'REVOKE ALL ON "{table}_default" FROM ') for line in lines), table
