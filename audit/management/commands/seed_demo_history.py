"""Write a few weeks of demo audit history (audit/demo.py); called by ``seed_demo``, idempotent."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from accounts.models import User
from audit.demo import seed_history
from audit.sealer import seal_events

NEEDED = ("physician", "physician2", "nurse", "nurse2", "radiology", "ems", "security")


class Command(BaseCommand):
    help = "Add three weeks of demo access history, sign-in failures, a past emergency grant and alerts (once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--force", action="store_true", help="Run even with DEBUG off (never on real data).")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG and not options["force"]:
            raise CommandError("seed_demo_history writes made-up audit history and refuses to run with DEBUG off.")
        users = {user.username: user for user in User.objects.filter(username__in=[*NEEDED, "lab", "front_desk"])}
        missing = [name for name in NEEDED if name not in users]
        if missing:
            raise CommandError(f"Run seed_demo first: demo users missing ({', '.join(missing)}).")
        with transaction.atomic():
            history = seed_history(users=users)
        # Seal what seeding wrote (the demo's patients, staff and history), as the sealer would within a second:
        # a demo database verifies at once, whether or not a sealer runs beside it.
        seal_events()
        if history.skipped:
            self.stdout.write("Demo history already present: nothing added.")
            return
        source = "scan_access" if history.alerts_from_scan else "made directly"
        self.stdout.write(
            f"Demo history: {history.access_events} access events over three weeks, {history.auth_events} sign-in "
            f"events, {history.grants} emergency grant, {history.alerts} alerts ({source})."
        )
