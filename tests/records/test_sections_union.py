"""The chart's small sections in one UNION ALL (records/selectors/sections.py, issue 11): each section
keeps its own filter, order and limit, and every encrypted value is still opened with its own field
and its own row, so a token copied to another row, another column or another table fails loudly."""

from __future__ import annotations

import datetime

import pytest
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from healthcrypt.crypto import DecryptionError
from records.models import Allergy, Condition, Medication, MedicationAdministration, Patient
from records.selectors import sections
from records.selectors.sections import Section, sections_read, sections_read_shaped
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


# --- The same union compiled once per shape (sections_read_shaped) -----------------------------------


def shaped(patient_id: int, now: datetime.datetime) -> list[Section]:
    """Conditions recorded up to ``now`` and allergies: a shape with both placeholders."""
    return [
        Section(
            "conditions",
            Condition.objects.filter(patient_id=patient_id, recorded_at__lte=now),
            ("-recorded_at",),
            3,
            ("display", "code"),
        ),
        Section("allergies", Allergy.objects.filter(patient_id=patient_id), ("recorded_at",), 10, ("substance",)),
    ]


union = sections._union


def forget_statements() -> None:
    connections[DEFAULT_DB_ALIAS].__dict__.pop(sections._STATEMENTS, None)


def test_a_kept_shape_reads_what_the_ordinary_union_reads_for_every_patient_and_instant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    forget_statements()
    first, second, empty = PatientFactory(), PatientFactory(), PatientFactory()
    conditions(first, 5)
    allergies(first, 2)
    conditions(second, 2)
    allergies(second, 4)
    built = []
    monkeypatch.setattr(sections, "_union", lambda s: built.append(1) or union(s))
    key = ("test", "conditions+allergies")
    now = timezone.now()
    for patient in (first, second, empty):
        for at in (now, now - datetime.timedelta(days=1, hours=1)):
            values = {"patient_id": patient.pk, "now": at}
            with CaptureQueriesContext(connection) as captured:
                found = sections_read_shaped(key, shaped, values)
            assert len(captured.captured_queries) == 1
            assert found == sections_read(shaped(**values))
    # Compiled once for the shape (the ordinary reads above built theirs each time).
    assert len(built) == 1 + 6
    assert [
        r["display"] for r in sections_read_shaped(key, shaped, {"patient_id": first.pk, "now": now})["conditions"]
    ] == ["Condition 0", "Condition 1", "Condition 2"]
    # ``now`` is bound, not frozen at the first read: a day ago, the two newest conditions did not exist yet.
    earlier = sections_read_shaped(
        key, shaped, {"patient_id": first.pk, "now": now - datetime.timedelta(days=1, hours=1)}
    )
    assert [r["display"] for r in earlier["conditions"]] == ["Condition 2", "Condition 3", "Condition 4"]
    forget_statements()


def test_a_shape_that_ignores_a_placeholder_is_not_kept_and_still_reads_right() -> None:
    """A build that bakes the patient in (so the placeholder never reaches the SQL) must not be kept:
    kept, it would show that patient's rows to everyone who asks."""
    forget_statements()
    mine, theirs = PatientFactory(), PatientFactory()
    conditions(mine, 2)
    conditions(theirs, 1)

    def baked(patient_id: int, now: datetime.datetime) -> list[Section]:
        return both(mine)

    key = ("test", "baked")
    assert [
        r["display"]
        for r in sections_read_shaped(key, baked, {"patient_id": mine.pk, "now": timezone.now()})["conditions"]
    ] == ["Condition 0", "Condition 1"]
    assert connections[DEFAULT_DB_ALIAS].__dict__[sections._STATEMENTS][key] is None
    forget_statements()


def test_a_kept_shape_still_refuses_a_value_copied_from_another_patients_row() -> None:
    forget_statements()
    [mine] = conditions(PatientFactory(), 1)
    [theirs] = conditions(PatientFactory(), 1)
    key = ("test", "copied")
    sections_read_shaped(key, shaped, {"patient_id": theirs.patient_id, "now": timezone.now()})  # kept
    set_raw(
        "UPDATE records_condition SET display = (SELECT display FROM records_condition WHERE id = %s) WHERE id = %s",
        [theirs.pk, mine.pk],
    )
    with pytest.raises(DecryptionError):
        sections_read_shaped(key, shaped, {"patient_id": mine.patient_id, "now": timezone.now()})
    forget_statements()


def test_a_shape_without_the_clock_is_kept_on_the_patient_alone() -> None:
    """The chart binds ``now`` only when the care team is shown; a shape without it is still kept."""
    forget_statements()
    patient = PatientFactory()
    conditions(patient, 2)

    def by_patient(patient_id: int, now: datetime.datetime) -> list[Section]:
        return [Section("conditions", Condition.objects.filter(patient_id=patient_id), ("-recorded_at",), 5, ("code",))]

    key = ("test", "no clock")
    found = sections_read_shaped(key, by_patient, {"patient_id": patient.pk, "now": timezone.now()})
    assert [r["code"] for r in found["conditions"]] == ["C0", "C1"]
    assert connections[DEFAULT_DB_ALIAS].__dict__[sections._STATEMENTS][key] is not None
    assert sections_read_shaped(key, by_patient, {"patient_id": PatientFactory().pk, "now": timezone.now()}) == {
        "conditions": []
    }
    forget_statements()
