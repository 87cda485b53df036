"""``manage.py export_fhir --patient MRN --actor USERNAME [--out FILE]``: a patient's record as FHIR R4
(docs/operations/fhir-export.md). Every export is a disclosure, recorded with its recipient and purpose.

The actor must be allowed to export this patient from the chart (``export_record`` and a care
relationship); the command finds the patient by the blind index of the MRN and goes through the same
audited read as the download on the chart. Messages name neither the patient nor anything of the
record; a refusal is a CommandError, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from exchange.cli import export_actor, export_refusals, patient_by_mrn
from exchange.fhir.export import dumps, export_patient
from exchange.output import write_private
from records.selectors.export import EXPORT_PURPOSES

PURPOSES = [value for value, _ in EXPORT_PURPOSES]


class Command(BaseCommand):
    help = (
        "Export a patient's record as a FHIR R4 collection Bundle (JSON), as the named account, which must "
        "be allowed to export it from the chart. Recorded as a disclosure to the recipient, for the purpose."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--patient", required=True, metavar="MRN", help="the patient's medical record number")
        parser.add_argument("--actor", required=True, help="username of the account the disclosure names")
        parser.add_argument("--out", type=Path, help="file to write (default: standard output)")
        parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
        parser.add_argument("--purpose", choices=PURPOSES, default="continuity_of_care")
        parser.add_argument(
            "--recipient", default="", help="who receives the record (required: the accounting of disclosures names it)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        out: Path | None = options["out"]
        if out is not None and out.exists() and not options["force"]:
            raise CommandError("--out names a file that exists; add --force to overwrite it.")
        recipient = options["recipient"].strip()
        if not recipient:
            raise CommandError("--recipient is required: every export is a disclosure to someone.")
        user = export_actor(options["actor"])
        patient = patient_by_mrn(options["patient"])
        # The file is written inside the export's transaction: if it cannot be, no disclosure stays recorded.
        with export_refusals("The export"), transaction.atomic():
            bundle = export_patient(actor=user, patient_id=patient.pk, purpose=options["purpose"], recipient=recipient)
            text = dumps(bundle)
            if out is not None:
                write_private(out, text, force=options["force"])
        if out is None:
            self.stdout.write(text)
        else:
            self.stderr.write(f"Wrote {len(bundle['entry'])} resources to {out}.")
