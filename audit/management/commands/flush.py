"""Django's ``flush``, allowed past the audit tables' append-only guards in tests and development only.

The test runner empties the database between transactional tests with ``flush``; the append-only
triggers would (rightly) refuse. This opens the maintenance switch for the duration of the flush,
and refuses to do so in production.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import CommandError
from django.core.management.commands.flush import Command as DjangoFlush
from django.db import connections


class Command(DjangoFlush):
    def handle(self, **options: Any) -> None:
        if not (settings.DEBUG or getattr(settings, "TESTING", False)):
            raise CommandError("flush would erase the audit trail; it is refused outside DEBUG and tests.")
        connection = connections[options["database"]]
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
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
