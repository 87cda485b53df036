"""``python manage.py verify_audit``: exit 0 when every audit chain is intact; 1 naming the first bad event.

``--checkpoints DIR`` also compares the chains with the signed checkpoints in DIR (audit/checkpoints.py),
which catches a tail deleted together with a rewritten head; ``--public-key`` names the key to trust.
``--since N`` (or ``latest``) checks only what was sealed after checkpoint N of DIR, starting each chain
from the head that checkpoint signed. ``--jobs`` checks chain segments in parallel processes (default:
one per core on PostgreSQL); a progress bar goes to stderr on a terminal (``--progress`` forces it).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from tqdm import tqdm

from audit.checkpoints import CheckpointError, chain_starts, fingerprint, trusted_public_key, verify_checkpoints
from audit.verify import verify_all
from healthcrypt.cli import positive_int


class Command(BaseCommand):
    help = "Check the audit trail's hash chains; names the first altered, inserted or missing event of each chain."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--checkpoints",
            metavar="DIR",
            help="Also check the chains against the signed checkpoints in DIR (written by audit_checkpoint).",
        )
        parser.add_argument(
            "--public-key",
            metavar="KEY",
            help="The checkpoint public key to trust (base64url, or a file holding it); "
            "default AUDIT_CHECKPOINT_PUBLIC_KEY, else derived from the signing key. "
            "Write --public-key=KEY: a base64url key may start with '-'.",
        )

        parser.add_argument(
            "--since",
            metavar="N",
            help="Check only events sealed after checkpoint N of --checkpoints DIR ('latest': the newest).",
        )
        parser.add_argument(
            "--jobs",
            type=positive_int,
            default=None,
            help="Parallel processes (default: one per core on PostgreSQL, 1 on SQLite).",
        )
        parser.add_argument(
            "--progress", action="store_true", help="Show the progress bar even when not on a terminal."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.perf_counter()
        jobs = options["jobs"] or ((os.cpu_count() or 1) if connection.vendor == "postgresql" else 1)
        since, since_note = None, ""
        if options["since"]:
            if not options["checkpoints"]:
                raise CommandError("--since needs --checkpoints DIR (the checkpoint to start from).")
            try:
                key, _ = trusted_public_key(options["public_key"])
                number, since = chain_starts(Path(options["checkpoints"]), key, options["since"])
            except CheckpointError as exc:
                raise CommandError(f"Cannot start from the checkpoint: {exc}") from None
            since_note = f" since checkpoint {number}"
        bar = tqdm(
            unit=" events",
            unit_scale=True,
            file=sys.stderr,
            disable=not (options["progress"] or sys.stderr.isatty()),
            desc="Verifying",
        )
        with bar:
            problems, summary = verify_all(
                jobs=jobs, since=since, progress=bar.update, on_total=lambda total: setattr(bar, "total", total)
            )
        lines = [str(problem) for problem in problems]
        checked = f"{summary.events} events in {summary.partitions} chains{since_note} ({jobs} process(es))"
        if options["checkpoints"]:
            try:
                key, source = trusted_public_key(options["public_key"])
                found, checkpoints = verify_checkpoints(Path(options["checkpoints"]), key)
            except CheckpointError as exc:
                raise CommandError(f"Cannot check the checkpoints: {exc}") from None
            lines += [str(problem) for problem in found]
            for warning in checkpoints.warnings:
                self.stderr.write(f"WARNING: {warning}")
            checked += (
                f", against {checkpoints.checkpoints} checkpoint(s) signed by key {fingerprint(key)} ({source}),"
                f" {checkpoints.heads_checked} recorded heads"
            )
            problems_count = len(problems) + len(found)
        else:
            problems_count = len(problems)
        elapsed = time.perf_counter() - started
        if problems_count:
            for line in lines:
                self.stderr.write(line)
            raise CommandError(
                f"Audit trail NOT intact: {problems_count} problem(s) ({checked} checked in {elapsed:.1f} s)."
            )
        self.stdout.write(f"Audit trail intact: {checked} checked in {elapsed:.1f} s.")
