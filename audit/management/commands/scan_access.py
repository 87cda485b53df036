"""Re-run the anomaly rules over stored events (DESIGN.md §7)::

    python manage.py scan_access [--since DATE] [--until DATE] [--rule NAME] [--no-baselines] [--no-progress]

Reads the access events of the window in time order with set-based queries per chunk (patients,
actors, orders and baselines in one query each, never one per event), the grants, sealed direct
changes and sign-in failures of the window likewise, and raises an alert for each finding that has
none yet: ``AlertSubject`` is unique per (rule, event), so a second run, or a run over events the
inline rules already judged, raises nothing new. Historical events (days old, loaded in bulk) are
judged at their own time: orders open then, the user's clock hour then.

Before judging it recomputes the activity baselines (usual hours, busiest hour) of every user and
department from the four weeks before ``--until``, unless ``--no-baselines``.
"""

from __future__ import annotations

import datetime
import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from audit import detection, rules
from audit.facts import baselines_refresh

DEFAULT_DAYS = 1


def _moment(raw: str | None, *, name: str) -> datetime.datetime | None:
    if not raw:
        return None
    parsed = parse_datetime(raw)
    if parsed is None:
        day = parse_date(raw)
        if day is None:
            raise CommandError(f"--{name}: expected YYYY-MM-DD or an ISO date and time.")
        parsed = datetime.datetime.combine(day, datetime.time.min)
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed)
    return parsed


class Command(BaseCommand):
    help = "Re-run the anomaly rules over stored events and raise the alerts not raised yet."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", help=f"Start (inclusive), date or date-time; default {DEFAULT_DAYS} day ago.")
        parser.add_argument("--until", help="End (exclusive), date or date-time; default now.")
        parser.add_argument(
            "--rule",
            # forged_event is the sealer's (it checks macs as it links events); verify_audit re-checks them.
            choices=sorted(name for name, rule in rules.ALL_RULES.items() if rule.kind != "event"),
            help="Run this rule only.",
        )
        parser.add_argument("--no-baselines", action="store_true", help="Judge with the stored baselines as they are.")
        parser.add_argument("--no-progress", action="store_true", help="No progress line on stderr.")

    def handle(self, *args: Any, **options: Any) -> None:
        until = _moment(options["until"], name="until") or timezone.now()
        since = _moment(options["since"], name="since") or until - datetime.timedelta(days=DEFAULT_DAYS)
        if since >= until:
            raise CommandError("--since must be before --until.")
        started = time.monotonic()
        if not options["no_baselines"]:
            written = baselines_refresh(until=until)
            self.stdout.write(f"Baselines: {written} users and departments.")
        total = detection.access_count(since, until)
        show = not options["no_progress"]
        done = 0
        tty = self.stderr.isatty() if hasattr(self.stderr, "isatty") else sys.stderr.isatty()

        def progress(rows: int) -> None:
            nonlocal done
            done += rows
            if not show:
                return
            elapsed = max(time.monotonic() - started, 1e-9)
            percent = 100 * done / total if total else 100.0
            line = f"scan_access: {done:>10,}/{total:,} events ({percent:5.1f}%) {done / elapsed:10,.0f} events/s"
            if tty:
                self.stderr.write("\r" + line, ending="")
            else:
                self.stderr.write(line)

        outcome = detection.scan(since=since, until=until, only=options["rule"], progress=progress)
        if show and tty and done:
            self.stderr.write("")
        elapsed = time.monotonic() - started
        self.stdout.write(
            f"Scanned {total:,} access events from {since.isoformat()} to {until.isoformat()} in {elapsed:.1f} s: "
            f"{outcome.judged:,} accesses judged, {len(outcome.raised)} new alert(s), {outcome.failures} rule failure(s)."
        )
        for rule in sorted(outcome.findings):
            self.stdout.write(f"  {rule}: {outcome.findings[rule]} finding(s)")
