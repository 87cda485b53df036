"""``python manage.py verify_audit``: exit 0 when every audit chain is intact; 1 naming the first bad event.

``--checkpoints DIR`` also compares the chains with the signed checkpoints in DIR (audit/checkpoints.py),
which catches a tail deleted together with a rewritten head; ``--public-key`` names the key to trust.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.checkpoints import CheckpointError, fingerprint, trusted_public_key, verify_checkpoints
from audit.verify import verify_all


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

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.perf_counter()
        problems, summary = verify_all()
        lines = [str(problem) for problem in problems]
        checked = f"{summary.events} events in {summary.partitions} chains"
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
