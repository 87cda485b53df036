"""``manage.py import_fhir PATH... --actor USERNAME``: import FHIR R4 bundles (docs/operations/fhir-import.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.roles import Capability, has_capability
from exchange.fhir.importer import import_paths


class Command(BaseCommand):
    help = (
        "Import FHIR R4 transaction/batch bundles (files, or folders of *.json) into the clinical record, "
        "one transaction per bundle, as the named account (it needs the import_records capability)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", type=Path, help="bundle files or folders of them")
        parser.add_argument("--actor", required=True, help="username of the account the change events name")
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["actor"]).first()
        # One answer for a missing, inactive or unentitled account: the command names no more than it must.
        if user is None or not user.is_active or not has_capability(user, Capability.IMPORT_RECORDS):
            raise CommandError("--actor must be an active account whose role may import records (import_records).")
        missing = [str(path) for path in options["paths"] if not path.exists()]
        if missing:
            raise CommandError(f"No such file or folder: {', '.join(missing)}")
        summary = import_paths(options["paths"], actor=user, progress=False if options["no_progress"] else None)
        self.stdout.write(f"{'type':<22}{'imported':>10}{'present':>10}{'skipped':>10}")
        for name in sorted(summary.counts):
            count = summary.counts[name]
            self.stdout.write(f"{name:<22}{count.imported:>10}{count.present:>10}{count.skipped:>10}")
        ok = len(summary.files) - len(summary.failed)
        self.stdout.write(f"{ok} of {len(summary.files)} bundle(s) imported.")
        for result in summary.failed:
            self.stderr.write(f"{result.path}: refused, nothing of it written")
            for problem in result.problems[:20]:
                self.stderr.write(f"  {problem}")
            if len(result.problems) > 20:
                self.stderr.write(f"  ... and {len(result.problems) - 20} more")
        if summary.failed:
            raise CommandError(f"{len(summary.failed)} bundle(s) refused.")
