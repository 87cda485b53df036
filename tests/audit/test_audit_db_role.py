"""``manage.py audit_db_role``: the grants that keep the application's own PostgreSQL role from rewriting
the audit trail; refused where there are no roles (SQLite)."""

from __future__ import annotations

import secrets
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from audit.guards import GUARDED_TABLES
from audit.sealer import seal_events
from audit.services import auth_event_record
from audit.verify import verify_all

pytestmark = pytest.mark.django_db


@pytest.mark.skipif(connection.vendor == "postgresql", reason="the refusal on SQLite, which has no roles")
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


@pytest.mark.skipif(connection.vendor != "postgresql", reason="roles and grants exist on PostgreSQL only")
def test_with_a_separate_sealer_role_only_the_sealer_may_place_events_in_a_chain() -> None:
    """A stolen web-worker login (the application role) cannot set an event's chain columns or move a head;
    the sealer's own role seals as before. Roles are made and dropped inside the test's transaction."""
    app, sealer = f"hc_app_{secrets.token_hex(3)}", f"hc_sealer_{secrets.token_hex(3)}"
    out = StringIO()
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {app} NOLOGIN")
        cursor.execute(f"CREATE ROLE {sealer} NOLOGIN")
    call_command("audit_db_role", app, "--sealer", sealer, "--apply", stdout=out)
    lines = out.getvalue().splitlines()
    assert not [line for line in lines if line.startswith("GRANT UPDATE (") and line.endswith(f'TO "{app}";')]
    assert [line for line in lines if line.startswith("GRANT UPDATE (") and line.endswith(f'TO "{sealer}";')]

    event = auth_event_record(event="login", actor=None, target=None, username="x", ip=None, user_agent="", detail={})
    with connection.cursor() as cursor:
        cursor.execute(f"SET ROLE {app}")
        for statement in (
            "UPDATE audit_autheventrecord SET partition = 0, seq = 1, prev_hash = 'x', hash = 'y' WHERE id = %s",
            "UPDATE audit_auditchainhead SET last_seq = last_seq WHERE id = %s",
        ):
            with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic():
                cursor.execute(statement, [event.pk])
        cursor.execute(f"SET ROLE {sealer}")
        try:
            assert seal_events().sealed["auth"] == 1
        finally:
            cursor.execute("RESET ROLE")
    assert verify_all()[0] == []


@pytest.mark.skipif(connection.vendor != "postgresql", reason="roles and grants exist on PostgreSQL only")
def test_the_sealer_role_must_differ_from_the_application_role() -> None:
    with pytest.raises(CommandError, match="other than the application"):
        call_command("audit_db_role", "healthcrypt_app", "--sealer", "healthcrypt_app", stdout=StringIO())
