"""``manage.py export_package --patient MRN --partner NAME --actor USERNAME --out FILE``: a patient's record
for a registered partner, signed by the hospital and encrypted to the partner (docs/operations/packages.md).

The record is read exactly as ``export_fhir`` reads it (the actor must be allowed to export this
patient from the chart; an access event and a disclosure naming the partner are recorded), then
sealed by ``exchange.packages.seal_package`` (JWS with our current key, then JWE to the partner's
``use: enc`` key; the package's id and SHA-256 digest are recorded). The read, the disclosure, the
package row and the file are one transaction: if any step fails, none of it stays. Messages name
neither the patient nor anything of the record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.db.models import Q

from exchange.cli import export_actor, export_refusals, patient_by_mrn
from exchange.fhir.export import export_patient
from exchange.keys import HospitalKeysUnavailable
from exchange.output import write_private
from exchange.packages import PartnerKeyMissing, seal_package
from exchange.partners.models import Partner
from records.selectors.export import EXPORT_PURPOSES

PURPOSES = [value for value, _ in EXPORT_PURPOSES]


class Command(BaseCommand):
    help = (
        "Write a patient's record as a package for a registered partner: the FHIR R4 Bundle signed with the "
        "hospital's key and encrypted to the partner's. Recorded as a disclosure to the partner."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--patient", required=True, metavar="MRN", help="the patient's medical record number")
        parser.add_argument("--partner", required=True, help="the partner's name or client id, as registered")
        parser.add_argument("--actor", required=True, help="username of the account the disclosure names")
        parser.add_argument("--out", required=True, type=Path, help="the package file to write (mode 0600)")
        parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
        parser.add_argument("--purpose", choices=PURPOSES, default="continuity_of_care")

    def handle(self, *args: Any, **options: Any) -> None:
        out = Path(options["out"])
        if out.exists() and not options["force"]:
            raise CommandError("--out names a file that exists; add --force to overwrite it.")
        partner = Partner.objects.filter(Q(name=options["partner"]) | Q(client_id=options["partner"])).first()
        if partner is None:
            raise CommandError("--partner names no registered partner (its name or client id).")
        if not partner.is_active:
            raise CommandError("This partner is suspended: nothing is sent to it.")
        user = export_actor(options["actor"])
        patient = patient_by_mrn(options["patient"])
        with export_refusals("The package", PartnerKeyMissing, HospitalKeysUnavailable), transaction.atomic():
            bundle = export_patient(
                actor=user, patient_id=patient.pk, purpose=options["purpose"], recipient=partner.name
            )
            data = seal_package(bundle, partner, patient=patient)
            write_private(out, data, force=options["force"])
        self.stderr.write(f"Wrote a package of {len(bundle['entry'])} resources for {partner.name} to {out}.")
