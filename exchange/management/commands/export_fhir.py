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

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from accounts.roles import Capability, has_capability
from exchange.fhir.export import ExportInvalid, dumps, export_patient
from exchange.output import write_private
from records.crypto import mrn_index
from records.models import Patient
from records.selectors import AccessNotRecorded, AccessRefused
from records.selectors.export import EXPORT_PURPOSES, ExportRequestInvalid

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
        user = get_user_model().objects.filter(username=options["actor"]).first()
        # One answer for a missing, inactive or unentitled account.
        if user is None or not user.is_active or not has_capability(user, Capability.EXPORT_RECORD):
            raise CommandError("--actor must be an active account whose role may export records (export_record).")
        patient_id = (
            Patient.objects.filter(mrn_index=mrn_index(options["patient"])).values_list("pk", flat=True).first()
        )
        if patient_id is None:
            raise CommandError("No patient has this medical record number.")
        try:
            # The file is written inside the export's transaction: if it cannot be, no disclosure stays recorded.
            with transaction.atomic():
                bundle = export_patient(
                    actor=user, patient_id=patient_id, purpose=options["purpose"], recipient=recipient
                )
                text = dumps(bundle)
                if out is not None:
                    write_private(out, text, force=options["force"])
        except AccessRefused as refused:
            # Names the rule, never the patient: "no relationship" as the chart's 404, a weak role as its 403.
            raise CommandError(
                f"--actor may not export this patient's record ({refused.explanation.replace('_', ' ')})."
            ) from None
        except AccessNotRecorded:
            raise CommandError("The disclosure could not be recorded, so nothing was exported.") from None
        except ExportRequestInvalid as invalid:
            raise CommandError(f"The export was refused: {invalid}.") from None
        except ExportInvalid:
            raise CommandError("The export did not validate against FHIR R4 (a bug); nothing was written.") from None
        except FileExistsError:
            raise CommandError("--out names a file that exists; add --force to overwrite it.") from None
        except OSError as error:
            raise CommandError(f"--out could not be written ({error.strerror}).") from None
        if out is None:
            self.stdout.write(text)
        else:
            self.stderr.write(f"Wrote {len(bundle['entry'])} resources to {out}.")
