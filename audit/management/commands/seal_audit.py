"""``python manage.py seal_audit [--loop]``: seal new audit events and direct database changes into their chains.

Requests insert their events unsealed (audit/chain.py); this links them into the hash chains
(audit/sealer.py) and seals new direct database changes (audit/sealing.py). Run it with ``--loop``
beside the web workers (docs/operations/database-roles.md has the systemd unit): every
``--interval`` seconds (``AUDIT_SEAL_INTERVAL``, default 0.5) it seals whatever committed since and,
with ``ANOMALY_RULES_AT = "sealer"``, every ``ANOMALY_RULES_JUDGE_INTERVAL`` seconds (default 5) judges
the access events sealed since with the anomaly rules (audit/detection/nearline.py). Direct changes are
looked for among the most recent ids every round and over the whole table every
``AUDIT_SEAL_FULL_INTERVAL`` seconds (default 60; audit/sealing.py). A failed round is logged and
retried; SIGTERM/SIGINT stop it after the round in progress.
"""

from __future__ import annotations

import logging
import signal
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError, connections

from audit.sealer import SealerConflict, seal_events
from audit.sealing import seal_direct_changes
from healthcrypt.cli import positive_seconds

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Seal new audit events and direct database changes into their hash chains (--loop: keep doing it)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--loop", action="store_true", help="Keep sealing until stopped (beside the web workers).")
        parser.add_argument(
            "--interval",
            type=positive_seconds,
            default=None,
            help="Seconds between rounds with --loop (default AUDIT_SEAL_INTERVAL, 0.5).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity = int(options["verbosity"])
        if not options["loop"]:
            self._round(report=True)
            return
        interval = options["interval"] if options["interval"] is not None else settings.AUDIT_SEAL_INTERVAL
        stopping = False

        def stop(signum: int, frame: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        judge_every = float(settings.ANOMALY_RULES_JUDGE_INTERVAL)
        self.stdout.write(
            f"Sealing audit events every {interval:g} s (judging accesses every {judge_every:g} s); "
            "stop with SIGTERM or Ctrl+C."
        )
        full_every = float(settings.AUDIT_SEAL_FULL_INTERVAL)
        judged_at: float | None = None
        full_at: float | None = None
        while not stopping:
            try:
                # Judging reads facts per batch: every few seconds, not every round (settings.py); the
                # whole direct-change table is looked at every minute, the recent ids every round.
                judge = judged_at is None or time.monotonic() - judged_at >= judge_every
                full = full_at is None or time.monotonic() - full_at >= full_every
                self._round(report=False, judge=judge, full=full)
                if judge:
                    judged_at = time.monotonic()
                if full:
                    full_at = time.monotonic()
            except (DatabaseError, SealerConflict):
                # The database went away or a batch conflicted: nothing was half-sealed (one transaction per
                # batch). Drop the connection and try again next round.
                logger.exception("audit sealing round failed; retrying")
                connections.close_all()
            time.sleep(interval)

    def _round(self, *, report: bool, judge: bool = True, full: bool = True) -> None:
        events = seal_events(judge=judge)
        direct = seal_direct_changes(recent=not full)
        if report or (self.verbosity > 1 and (events.total or direct.sealed)):
            counts = ", ".join(f"{n} {stream}" for stream, n in events.sealed.items())
            self.stdout.write(f"Sealed {events.total} event(s) ({counts}).")
            if events.judged is not None:
                self.stdout.write(
                    f"Judged {events.judged.judged} access(es): {len(events.judged.raised)} new alert(s), "
                    f"{events.judged.failures} rule failure(s)."
                )
            self.stdout.write(
                f"Sealed {direct.sealed} direct change(s); {direct.unverified} without a valid application marker."
            )
        if direct.unverified:
            self.stderr.write(
                "Direct changes outside the application: see the compliance admin (direct changes, made by: outside)."
            )
