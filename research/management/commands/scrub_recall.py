"""``manage.py scrub_recall [--corpus DIR] [--show-misses]``: measure the note scrubber
(research/scrub/) on an annotated synthetic corpus and print recall per kind, overall, on the
identifiers the record knows, and precision on protected clinical words."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from research.scrub_eval import evaluate

DEFAULT_CORPUS = Path(settings.BASE_DIR) / "tests" / "research" / "data" / "notes"


class Command(BaseCommand):
    help = "Measure the note scrubber's recall and precision on an annotated synthetic corpus."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="folder with records.json, notes.json")
        parser.add_argument(
            "--show-misses",
            action="store_true",
            help="list the identifiers that survived and the protected words that did not (synthetic text only)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        corpus: Path = options["corpus"]
        if not (corpus / "records.json").is_file() or not (corpus / "notes.json").is_file():
            raise CommandError("The corpus folder needs records.json and notes.json.")
        result = evaluate(corpus)
        self.stdout.write(result.table())
        if options["show_misses"]:
            for miss in result.missed:
                self.stdout.write(f"missed   {miss.note} {miss.kind}: {miss.text}")
            for miss in result.over_removed:
                self.stdout.write(f"removed  {miss.note} protected word: {miss.text}")
