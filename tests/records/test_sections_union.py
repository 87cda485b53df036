"""The chart's small sections in one UNION ALL (records/selectors/sections.py, issue 11): each section
keeps its own filter, order and limit, and every encrypted value is still opened with its own field
and its own row, so a token copied to another row, another column or another table fails loudly."""

from __future__ import annotations

import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from healthcrypt.crypto import DecryptionError
from records.models import Allergy, Condition, Medication, MedicationAdministration, Patient
from records.selectors.sections import Section, sections_read
from tests.factories import PatientFactory, UserFactory

pytestmark = pytest.mark.django_db


def conditions(patient: Patient, n: int) -> list[Condition]:
    now = timezone.now()
    return [
        Condition.objects.create(
            patient=patient, display=f"Condition {i}", code=f"C{i}", recorded_at=now - datetime.timedelta(days=i)
        )
        for i in range(n)
    ]


def allergies(patient: Patient, n: int) -> list[Allergy]:
    now = timezone.now()
    return [
        Allergy.objects.create(
            patient=patient, substance=f"Substance {i}", recorded_at=now - datetime.timedelta(hours=i)
        )
        for i in range(n)
    ]


def both(patient: Patient, limit: int = 10) -> list[Section]:
    return [
        Section("conditions", Condition.objects.filter(patient=patient), ("-recorded_at",), limit, ("display", "code")),
        Section("allergies", Allergy.objects.filter(patient=patient), ("recorded_at",), limit, ("substance",)),
    ]


def set_raw(sql: str, params: list[object]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def test_every_section_comes_back_in_one_query_with_its_own_order_and_limit() -> None:
    patient, other = PatientFactory(), PatientFactory()
    conditions(patient, 5)
    allergies(patient, 4)
    conditions(other, 3)
    with CaptureQueriesContext(connection) as captured:
        found = sections_read(both(patient, limit=3))
    assert len(captured.captured_queries) == 1
    # The newest three conditions, newest first; the oldest three allergies, oldest first.
    assert [r["display"] for r in found["conditions"]] == ["Condition 0", "Condition 1", "Condition 2"]
    assert [r["code"] for r in found["conditions"]] == ["C0", "C1", "C2"]
    assert [r["substance"] for r in found["allergies"]] == ["Substance 3", "Substance 2", "Substance 1"]
    # Nothing of the other patient, and an empty section is an empty list.
    assert sections_read(both(PatientFactory())) == {"conditions": [], "allergies": []}


def test_a_joined_encrypted_column_is_opened_with_the_joined_rows_identity() -> None:
    patient = PatientFactory()
    nurse = UserFactory(first_name="Ann", last_name="Lee")
    medication = Medication.objects.create(patient=patient, display="Warfarin", prescribed_at=timezone.now())
    MedicationAdministration.objects.create(
        medication=medication, patient=patient, administered_by=nurse, administered_at=timezone.now(), dose="1 mg"
    )
    section = Section(
        "doses",
        MedicationAdministration.objects.filter(patient=patient),
        ("-administered_at",),
        10,
        ("dose", "medication__display", "administered_by__last_name"),
    )
    [row] = sections_read([section])["doses"]
    assert (row["dose"], row["medication__display"], row["administered_by__last_name"]) == ("1 mg", "Warfarin", "Lee")


def test_a_value_copied_from_another_patients_row_fails_loudly() -> None:
    [mine] = conditions(PatientFactory(), 1)
    [theirs] = conditions(PatientFactory(), 1)
    set_raw(
        "UPDATE records_condition SET display = (SELECT display FROM records_condition WHERE id = %s) WHERE id = %s",
        [theirs.pk, mine.pk],
    )
    with pytest.raises(DecryptionError):
        sections_read(both(mine.patient))


def test_a_value_moved_to_another_column_of_its_row_fails_loudly() -> None:
    [condition] = conditions(PatientFactory(), 1)
    set_raw("UPDATE records_condition SET code = display WHERE id = %s", [condition.pk])
    with pytest.raises(DecryptionError):
        sections_read(both(condition.patient))


def test_a_value_moved_to_another_table_fails_loudly() -> None:
    """Two sections share a union column; a token of one table in the other's row is refused even with the
    same row identity: the field (table and column) is part of what it is bound to."""
    patient = PatientFactory()
    [condition] = conditions(patient, 1)
    [allergy] = allergies(patient, 1)
    set_raw(
        "UPDATE records_allergy SET substance = (SELECT display FROM records_condition WHERE id = %s),"
        " row_uid = (SELECT row_uid FROM records_condition WHERE id = %s) WHERE id = %s",
        [condition.pk, condition.pk, allergy.pk],
    )
    with pytest.raises(DecryptionError):
        sections_read(both(patient))
