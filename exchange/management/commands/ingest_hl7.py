"""``manage.py ingest_hl7 FILE...``: apply HL7 v2 files (single messages, batches, files of batches)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from exchange.hl7.account import InterfaceAccountError, interface_account, interface_account_create
from exchange.hl7.ack import printable
from exchange.hl7.ingest import ingest_bytes
from exchange.models import HL7Message

# A file is read whole; this bounds it (a batch of many messages, each within HL7_MAX_MESSAGE_BYTES).
MAX_FILE_BYTES = 256 * 1024 * 1024


class Command(BaseCommand):
    help = (
        "Ingest HL7 v2 messages from files: each message is applied on its own and answered AA, AE or AR. "
        "Prints one line per message (control id, type, ACK code) and a summary; exits 1 if any was not accepted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
        parser.add_argument("--actor", default="", help="the interface account (default: HL7_INTERFACE_USERNAME)")
        parser.add_argument(
            "--create-account", action="store_true", help="create the interface account first if it does not exist"
        )
        parser.add_argument("--acks", action="store_true", help="also print each ACK message")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["create_account"]:
            interface_account_create(options["actor"])
        try:
            actor = interface_account(options["actor"])
        except InterfaceAccountError as error:
            raise CommandError(str(error)) from error
        counts = {"AA": 0, "AE": 0, "AR": 0}
        for path in options["files"]:
            data = self._read(path)
            for outcome in ingest_bytes(data, actor=actor, channel=HL7Message.Channel.FILE):
                counts[outcome.ack_code] += 1
                style = self.style.SUCCESS if outcome.accepted else self.style.ERROR
                # The control id and type as the sender wrote them, control characters (a terminal's
                # escape sequences) written as HL7 hex data.
                self.stdout.write(
                    f"{path.name}: {printable(outcome.control_id) or '-'} {printable(outcome.message_type) or '-'} "
                    + style(outcome.ack_code)
                    + f" {outcome.text}"
                )
                if options["acks"]:
                    self.stdout.write(outcome.ack.replace("\r", "\n"))
        total = sum(counts.values())
        self.stdout.write(
            f"{total} message(s): {counts['AA']} accepted (AA), {counts['AE']} errors (AE), {counts['AR']} rejected (AR)"
        )
        if counts["AE"] or counts["AR"]:
            raise CommandError(f"{counts['AE'] + counts['AR']} of {total} message(s) were not accepted.")

    def _read(self, path: Path) -> bytes:
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise CommandError(f"{path}: larger than {MAX_FILE_BYTES} bytes; split it.")
            return path.read_bytes()
        except OSError as error:
            raise CommandError(f"{path}: cannot be read ({error.strerror}).") from error
