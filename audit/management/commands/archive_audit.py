"""Copy audit events out, with their chain links, for long-term archives. Never deletes.

``python manage.py archive_audit --before 2020-01-01 --out archive.jsonl`` writes one JSON line per
event (every column, including partition, seq, prev_hash and hash, so an archive can be verified on
its own with the HMAC key) and a final line with the chain heads.

``python manage.py archive_audit --month 2026-11 --out audit-2026-11.jsonl`` writes one month: every
access, change and authentication event whose ``at`` falls in that month (UTC), i.e. exactly that
month's partition of each event table on PostgreSQL (audit/partitions.py; the same rows by date on
SQLite), in chain order, then a final line with the month, the row count and sha256 of each stream's
lines, the partitions' names and the chain heads. A month still in progress, or one with events not
sealed yet, is refused: its archive would be incomplete or carry no links.

Deleting events is not something the application does: the retention policy (AUDIT_RETENTION_YEARS,
at least 10 by default, after ASTM E2147) is enforced by keeping everything; removal, when a policy
allows it, is a database owner's job after archiving, and the triggers refuse it to the application.
Detaching an archived month's partitions is designed (docs/decisions/0006-audit-chain.md, "Archiving a
month") but not built: ``verify_audit`` would need the archived ranges to skip.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path
from typing import Any, TextIO

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from audit import partitions
from audit.chain import AuditChainHead, Chained
from audit.models import AccessEvent, AuthEventRecord, ChangeEvent
from audit.verify import CHAINED_MODELS

MONTHLY_MODELS: tuple[type[Chained], ...] = (AccessEvent, ChangeEvent, AuthEventRecord)


class Command(BaseCommand):
    help = "Copy audit events older than --before, or of one --month, to a JSON-lines file (never deletes anything)."

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--before", help="ISO date: copy events older than this.")
        which.add_argument("--month", help="YYYY-MM: copy that month's events (its partition on PostgreSQL).")
        parser.add_argument("--out", required=True, help="File to write (must not exist).")

    def handle(self, *args: Any, **options: Any) -> None:
        out = Path(options["out"])
        if options["month"]:
            self._month(options["month"], out)
            return
        try:
            before = datetime.datetime.combine(
                datetime.date.fromisoformat(options["before"]), datetime.time.min, tzinfo=datetime.UTC
            )
        except ValueError:
            raise CommandError("--before must be a date like 2020-01-31.") from None
        if before > timezone.now():
            raise CommandError("--before cannot be in the future.")
        if out.exists():
            raise CommandError("The output file exists already; archives are never overwritten.")
        count = 0
        with out.open("x", encoding="utf-8") as handle:
            for model in CHAINED_MODELS:
                # Every chained model has its own ``at`` column (audit/chain.py, ``Chained.at``); the
                # abstract base only declares it, so the lookup is spelled as a Q for the type checker.
                count += _write(handle, model, Q(at__lt=before))
            heads = list(AuditChainHead.objects.order_by("stream", "partition").values())
            handle.write(json.dumps({"heads": heads, "retention_years": settings.AUDIT_RETENTION_YEARS}) + "\n")
        self.stdout.write(f"Copied {count} events older than {before.date()} to {out}. Nothing was deleted.")

    def _month(self, text: str, out: Path) -> None:
        try:
            month = partitions.parse_month(text)
        except ValueError:
            raise CommandError("--month must be a month like 2026-11.") from None
        start, end = partitions.bounds(month)
        if end > timezone.now():
            raise CommandError("--month must be a month that is over; this one can still receive events.")
        if out.exists():
            raise CommandError("The output file exists already; archives are never overwritten.")
        in_month = Q(at__gte=start, at__lt=end)
        streams: dict[str, dict[str, Any]] = {}
        # One snapshot: the rows, the digests and the heads describe the same moment. Only the first
        # statement of a transaction may set its isolation (a caller's transaction is used as it is).
        outermost = not connection.in_atomic_block
        with transaction.atomic():
            if connection.vendor == "postgresql" and outermost:
                with connection.cursor() as cursor:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            for model in MONTHLY_MODELS:
                if model._default_manager.filter(in_month, hash="").exists():
                    raise CommandError(
                        f"{model.STREAM}: events of {text} are not sealed yet; run `manage.py seal_audit` first."
                    )
            with out.open("x", encoding="utf-8") as handle:
                for model in MONTHLY_MODELS:
                    digest = hashlib.sha256()
                    count = _write(handle, model, in_month, digest)
                    streams[model.STREAM] = {
                        "table": model._meta.db_table,
                        "partition": (
                            partitions.partition_name(model._meta.db_table, month)
                            if connection.vendor == "postgresql"
                            else None  # SQLite: plain tables
                        ),
                        "events": count,
                        "sha256": digest.hexdigest(),
                    }
                heads = list(AuditChainHead.objects.order_by("stream", "partition").values())
                summary = {
                    "month": text,
                    "from": start.isoformat(),
                    "to": end.isoformat(),
                    "streams": streams,
                    "heads": heads,
                    "retention_years": settings.AUDIT_RETENTION_YEARS,
                }
                handle.write(json.dumps(summary, sort_keys=True) + "\n")
        total = sum(s["events"] for s in streams.values())
        self.stdout.write(f"Copied {total} events of {text} to {out}. Nothing was deleted or detached.")


def _write(handle: TextIO, model: type[Chained], where: Q, digest: Any = None) -> int:
    """Write ``model``'s rows matching ``where`` in chain order, one JSON line each; returns how many."""
    count = 0
    rows = model._default_manager.filter(where).order_by("partition", "seq").values().iterator(chunk_size=5000)
    for row in rows:
        line = json.dumps({"stream": model.STREAM, **row}, cls=DjangoJSONEncoder, sort_keys=True) + "\n"
        handle.write(line)
        if digest is not None:
            digest.update(line.encode())
        count += 1
    return count
