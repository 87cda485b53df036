"""``python manage.py audit_checkpoint``: sign every audit chain's head and append it outside the database.

Run it from a timer (docs/operations/audit-checkpoints.md), every 5 minutes. It first
seals pending direct-database changes into their chain (audit/sealing.py), so the
checkpoint also fixes how many of those were recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.checkpoints import CheckpointError, fingerprint, signing_key, write_checkpoint
from audit.sealing import seal_direct_changes


class Command(BaseCommand):
    help = "Write a signed checkpoint of every audit chain's head to an append-only directory (and syslog)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--out", help="Directory for the checkpoint file (default: AUDIT_CHECKPOINT_DIR). Meant for WORM storage."
        )
        parser.add_argument(
            "--syslog",
            help="Also send the file's digest to syslog: /dev/log or host:port (default: AUDIT_CHECKPOINT_SYSLOG).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        directory = options["out"] or settings.AUDIT_CHECKPOINT_DIR
        if not directory:
            raise CommandError("No checkpoint directory: pass --out DIR or set AUDIT_CHECKPOINT_DIR.")
        syslog_address = options["syslog"] if options["syslog"] is not None else settings.AUDIT_CHECKPOINT_SYSLOG
        try:
            key = signing_key()
            sealed = seal_direct_changes().sealed
            written = write_checkpoint(Path(directory), syslog_address=syslog_address)
        except (CheckpointError, OSError) as exc:
            raise CommandError(f"No checkpoint written: {exc}") from None
        if sealed:
            self.stdout.write(f"Sealed {sealed} pending direct-database change(s) first.")
        self.stdout.write(
            f"Checkpoint {written.sequence} written to {written.path}: {written.chains} chain heads, "
            f"{written.events} events, signed by key {fingerprint(key.public_key())}, sha256 {written.digest}."
        )
