"""``manage.py deid_export --request ID --out DIR [--actor USERNAME] [--force]``: build the dataset of
an approved research request (research/build.py) as the compliance officer named by ``--actor``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import User
from records.selectors import AccessNotRecorded, AccessRefused
from research.build import BuildRefused, dataset_build


class Command(BaseCommand):
    help = "Build the de-identified dataset of an approved research request into an empty directory."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--request", type=int, required=True, help="the dataset request's id")
        parser.add_argument("--out", type=Path, required=True, help="an empty (or new) directory")
        parser.add_argument(
            "--actor",
            required=True,
            help="username of the compliance officer building it (not the request's researcher)",
        )
        parser.add_argument("--force", action="store_true", help="write into a non-empty directory")
        parser.add_argument("--progress", action="store_true", help="show the progress bar even when not a TTY")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = User.objects.filter(username=options["actor"], is_active=True).first()
        if actor is None:
            raise CommandError("No active user with that username.")
        try:
            dataset = dataset_build(
                actor=actor,
                request_id=options["request"],
                out=options["out"],
                force=options["force"],
                progress=options["progress"] or sys.stderr.isatty(),
            )
        except (BuildRefused, PermissionDenied, AccessRefused) as exc:
            raise CommandError(str(exc) or "Refused.") from None
        except AccessNotRecorded:
            raise CommandError("The audit trail could not record the read; nothing was written.") from None
        report = dataset.privacy_report
        self.stdout.write(
            f"Dataset {dataset.pk}: {dataset.rows} rows, k={report['k_reached']} "
            f"(requested {report['k_requested']}), {report['rows_suppressed']} suppressed, "
            f"loss {report['information_loss']:.3f}; files in {options['out']}"
        )
