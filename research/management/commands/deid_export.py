"""``manage.py deid_export --request ID --actor USERNAME [--out DIR] [--force]``: build the dataset of
an approved research request (research/build.py) as the compliance officer named by ``--actor``.

Without ``--out`` the files go to ``RESEARCH_DATASETS_DIR/request-<id>/``, the only place the
researcher's download (research/downloads.py) reads them from; with ``--out`` they go where asked
(for a hand-over outside the application) and the web download says they are not available."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import User
from records.selectors import AccessNotRecorded, AccessRefused
from research.build import BuildRefused, dataset_build
from research.downloads import dataset_dir


class Command(BaseCommand):
    help = "Build the de-identified dataset of an approved research request into an empty directory."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--request", type=int, required=True, help="the dataset request's id")
        parser.add_argument(
            "--out",
            type=Path,
            default=None,
            help="an empty (or new) directory; default RESEARCH_DATASETS_DIR/request-<id>/ (downloadable)",
        )
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
        out = options["out"] or dataset_dir(options["request"])
        try:
            dataset = dataset_build(
                actor=actor,
                request_id=options["request"],
                out=out,
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
            f"loss {report['information_loss']:.3f}; files in {out}"
        )
