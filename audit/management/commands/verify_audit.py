"""``python manage.py verify_audit``: exit 0 when every audit chain is intact; 1 naming the first bad event."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.verify import verify_all


class Command(BaseCommand):
    help = "Check the audit trail's hash chains; names the first altered, inserted or missing event of each chain."

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.perf_counter()
        problems, summary = verify_all()
        elapsed = time.perf_counter() - started
        if problems:
            for problem in problems:
                self.stderr.write(str(problem))
            raise CommandError(
                f"Audit trail NOT intact: {len(problems)} chain(s) broken "
                f"({summary.events} events in {summary.partitions} chains checked in {elapsed:.1f} s)."
            )
        self.stdout.write(
            f"Audit trail intact: {summary.events} events in {summary.partitions} chains checked in {elapsed:.1f} s."
        )
