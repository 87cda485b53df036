"""django-auditlog's history names what changed, with every patient value fully redacted."""

from __future__ import annotations

import pytest
from auditlog.models import LogEntry
from django.db import connection

from records.models import Patient
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db


def test_patient_changes_are_logged_with_values_fully_redacted() -> None:
    patient = PatientFactory(family_name="Historyfamily", given_name="Hilda", phone="555-123-9876")
    patient.phone = "555-000-1111"
    patient.save()
    entries = LogEntry.objects.get_for_object(patient).order_by("id")
    assert [e.action for e in entries] == [LogEntry.Action.CREATE, LogEntry.Action.UPDATE]
    update = entries.last()
    assert update is not None
    assert set(update.changes_dict) == {"phone"}
    assert update.changes_dict["phone"] == ["[redacted]", "[redacted]"]
    assert update.object_repr == f"Patient #{patient.pk}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM auditlog_logentry")
        dump = " ".join(str(v) for row in cursor.fetchall() for v in row)
    # The phone numbers' digits with their dash: bare, "9876" can be the microseconds of a timestamp.
    for value in ("Historyfamily", "Hilda", "123-9876", "000-1111", patient.mrn_index):
        assert value not in dump


def test_secrets_and_blind_indexes_are_not_in_the_history() -> None:
    patient = PatientFactory()
    entry = LogEntry.objects.get_for_object(patient).get()
    assert "mrn_index" not in entry.changes_dict
    assert "name_dob_index" not in entry.changes_dict
    assert Patient.objects.count() == 1
