"""Fill the blind indexes the anomaly rules compare (surname, address) on patients registered before
they existed::

    python manage.py backfill_rule_indexes [--batch-size 500]

Idempotent: it reads the patients whose ``address_index`` or ``family_name_index`` is empty, computes
both from the decrypted values (records/crypto.py), and writes only those that change, a batch per
transaction, marked as the application's own job so the database guards do not report it as a direct
change. Nothing is logged but counts.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.db.models import Q

from healthcrypt.cli import positive_int
from records.crypto import address_index, family_name_index
from records.db import mark_actor
from records.models import Patient

JOB = "backfill_rule_indexes"


class Command(BaseCommand):
    help = "Compute the surname and address blind indexes of patients that have none yet."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=positive_int, default=500)

    def handle(self, *args: Any, **options: Any) -> None:
        size = options["batch_size"]
        last = 0
        changed = seen = 0
        todo = Patient.objects.filter(Q(address_index="") | Q(family_name_index="")).order_by("pk")
        while True:
            with transaction.atomic():
                batch = list(todo.filter(pk__gt=last).select_for_update()[:size])
                if not batch:
                    break
                mark_actor(None, job=JOB)
                for patient in batch:
                    seen += 1
                    surname = family_name_index(patient.family_name)
                    address = address_index(patient.address_line or "", patient.postal_code or "")
                    if (surname, address) != (patient.family_name_index, patient.address_index):
                        patient.family_name_index, patient.address_index = surname, address
                        patient.save(update_fields=["family_name_index", "address_index"])
                        changed += 1
                last = batch[-1].pk
        self.stdout.write(f"Checked {seen} patient(s) without a rule index; filled {changed}.")
