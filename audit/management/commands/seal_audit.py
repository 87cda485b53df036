"""``python manage.py seal_audit``: seal new direct database changes into their chain (audit/sealing.py).

Run it from a timer every minute or so (docs/operations/database-roles.md): the time between a
direct change and its seal is the window in which the database owner could delete the row unseen.
``verify_audit`` seals first as well.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from audit.sealing import seal_direct_changes


class Command(BaseCommand):
    help = "Seal new direct database changes (audit_directchange) into the 'direct' chain, checking their markers."

    def handle(self, *args: Any, **options: Any) -> None:
        result = seal_direct_changes()
        self.stdout.write(
            f"Sealed {result.sealed} direct change(s); {result.unverified} without a valid application marker."
        )
        if result.unverified:
            self.stderr.write(
                "Direct changes outside the application: see the compliance admin (direct changes, made by: outside)."
            )
