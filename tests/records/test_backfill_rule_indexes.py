"""backfill_rule_indexes fills the surname and address blind indexes once, and is idempotent."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from records.crypto import address_index, family_name_index
from records.models import Patient
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db


def test_backfill_fills_missing_indexes_and_is_idempotent() -> None:
    old = PatientFactory(family_name="Older", address_line="1 Mill Lane", postal_code="ZZ1 1ZZ")
    homeless = PatientFactory(family_name="Nowhere")
    Patient.objects.filter(pk__in=[old.pk, homeless.pk]).update(address_index="", family_name_index="")
    out = StringIO()
    call_command("backfill_rule_indexes", stdout=out)
    assert "filled 2" in out.getvalue()
    old.refresh_from_db()
    assert old.address_index == address_index("1 Mill Lane", "ZZ1 1ZZ")
    assert old.family_name_index == family_name_index("Older")
    again = StringIO()
    call_command("backfill_rule_indexes", stdout=again)
    assert "filled 0" in again.getvalue()  # the patient without an address keeps an empty index
