"""Copy old audit events out, with their chain links, for long-term archives. Never deletes.

``python manage.py archive_audit --before 2020-01-01 --out archive.jsonl`` writes one JSON line per
event (every column, including partition, seq, prev_hash and hash, so an archive can be verified on
its own with the HMAC key) and a final line with the chain heads. Deleting events is not something
the application does: the retention policy (AUDIT_RETENTION_YEARS, at least 10 by default, after
ASTM E2147) is enforced by keeping everything; removal, when a policy allows it, is a database
owner's job after archiving, and the triggers refuse it to the application.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Q
from django.utils import timezone

from audit.chain import AuditChainHead
from audit.verify import CHAINED_MODELS


class Command(BaseCommand):
    help = "Copy audit events older than --before to a JSON-lines file (never deletes anything)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--before", required=True, help="ISO date: copy events older than this.")
        parser.add_argument("--out", required=True, help="File to write (must not exist).")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            before = datetime.datetime.combine(
                datetime.date.fromisoformat(options["before"]), datetime.time.min, tzinfo=datetime.UTC
            )
        except ValueError:
            raise CommandError("--before must be a date like 2020-01-31.") from None
        if before > timezone.now():
            raise CommandError("--before cannot be in the future.")
        out = Path(options["out"])
        if out.exists():
            raise CommandError("The output file exists already; archives are never overwritten.")
        count = 0
        with out.open("x", encoding="utf-8") as handle:
            for model in CHAINED_MODELS:
                # Every chained model has its own ``at`` column (audit/chain.py, ``Chained.at``); the
                # abstract base only declares it, so the lookup is spelled as a Q for the type checker.
                for row in (
                    model._default_manager.filter(Q(at__lt=before))
                    .order_by("partition", "seq")
                    .values()
                    .iterator(chunk_size=5000)
                ):
                    handle.write(
                        json.dumps({"stream": model.STREAM, **row}, cls=DjangoJSONEncoder, sort_keys=True) + "\n"
                    )
                    count += 1
            heads = list(AuditChainHead.objects.order_by("stream", "partition").values())
            handle.write(json.dumps({"heads": heads, "retention_years": settings.AUDIT_RETENTION_YEARS}) + "\n")
        self.stdout.write(f"Copied {count} events older than {before.date()} to {out}. Nothing was deleted.")
