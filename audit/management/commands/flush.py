"""Django's ``flush``, allowed past the audit tables' append-only guards in tests (and, on SQLite, development).

The test runner empties the database between transactional tests with ``flush``; the append-only
triggers would (rightly) refuse. This opens the maintenance switch for the duration of the flush,
and refuses to do so in production.

On PostgreSQL the switch opens only in a database whose name starts with ``test_`` and for a login
that is a member of the role ``healthcrypt_maintenance`` (audit/guards.py), which this command
creates: a session setting alone, which anyone can set, no longer opens anything. Roles belong to the
whole cluster, so the role stays once made; ``verify_audit`` and the startup check report it in any
database that is not a test database, which is why tests must never run on a production cluster.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import CommandError
from django.core.management.commands.flush import Command as DjangoFlush
from django.db import connections

from audit.guards import TEST_DATABASE_PREFIX, ensure_maintenance_role


class Command(DjangoFlush):
    def handle(self, **options: Any) -> None:
        if not (settings.DEBUG or getattr(settings, "TESTING", False)):
            raise CommandError("flush would erase the audit trail; it is refused outside DEBUG and tests.")
        connection = connections[options["database"]]
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                if not str(connection.settings_dict["NAME"]).startswith(TEST_DATABASE_PREFIX):
                    raise CommandError(
                        "On PostgreSQL the audit guards open for test databases only; drop and recreate "
                        "the database instead."
                    )
                ensure_maintenance_role(cursor)
                cursor.execute("SELECT set_config('healthcrypt.audit_maintenance', 'on', false)")
            elif connection.vendor == "sqlite":
                cursor.execute("INSERT INTO audit_guard_bypass (enabled) VALUES (1)")
        try:
            super().handle(**options)
        finally:
            with connection.cursor() as cursor:
                if connection.vendor == "postgresql":
                    cursor.execute("SELECT set_config('healthcrypt.audit_maintenance', 'off', false)")
                elif connection.vendor == "sqlite":
                    cursor.execute("DELETE FROM audit_guard_bypass")
