"""healthcrypt/bulk.py: many new rows at once (COPY on PostgreSQL) are written as bulk_create writes them."""

from __future__ import annotations

import datetime

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import DirectChange
from healthcrypt.bulk import bulk_insert, draw_keys
from records.db import mark_actor
from records.models import Encounter, Observation, Patient
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db


def _observations(patient: Patient, count: int) -> list[Observation]:
    return [
        Observation(
            patient=patient,
            category="vital-signs",
            loinc_code="8302-2",
            display="Body height",
            value=f"{170 + i}\tcm\\ \n",  # COPY's own separators and escape inside a value
            unit="cm",
            effective_at=timezone.now(),
            source_id=f"s{i}",
        )
        for i in range(count)
    ]


def test_rows_get_their_keys_in_order_and_their_values_bound_to_their_row() -> None:
    patient = PatientFactory()
    rows = _observations(patient, 3)
    inserted = bulk_insert(Observation, rows)
    assert inserted == rows
    keys = [row.pk for row in rows]
    assert keys == sorted(keys)
    assert len(set(keys)) == 3
    assert all(not row._state.adding for row in rows)
    stored = {row.pk: row for row in Observation.objects.filter(pk__in=keys)}
    for i, key in enumerate(keys):
        assert stored[key].value == f"{170 + i}\tcm\\ \n"
        assert stored[key].row_uid == rows[i].row_uid
        assert stored[key].created_at is not None
    # A later ordinary INSERT draws from the same sequence, after these keys.
    (later,) = _observations(patient, 1)
    later.source_id = "later"  # one row per patient and source id
    later.save()
    assert later.pk > keys[-1]


def test_a_row_the_database_refuses_raises_integrity_error_and_writes_nothing() -> None:
    patient = PatientFactory()
    start = timezone.now()
    rows = [
        Encounter(patient=patient, kind="ambulatory", starts_at=start, source_id="e1"),
        Encounter(
            patient=patient,
            kind="ambulatory",
            starts_at=start,
            ends_at=start - datetime.timedelta(hours=1),
            source_id="e2",
        ),
    ]
    with pytest.raises(IntegrityError), transaction.atomic():
        bulk_insert(Encounter, rows)
    assert not Encounter.objects.exists()


def test_a_single_row_or_a_row_with_a_key_goes_through_bulk_create() -> None:
    patient = PatientFactory()
    with CaptureQueriesContext(connection) as queries:
        bulk_insert(Observation, _observations(patient, 1))
    assert len(queries) == 1
    assert queries[0]["sql"].startswith("INSERT")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="COPY and the direct-change triggers are PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_copy_fires_the_direct_change_trigger_once_per_row_with_the_marker() -> None:
    patient = PatientFactory()
    with transaction.atomic():
        mark_actor(None, job="test")
        rows = bulk_insert(Observation, _observations(patient, 4))
    changes = list(DirectChange.objects.filter(table_name="records_observation").order_by("id"))
    assert [(change.operation, change.row_id) for change in changes] == [("INSERT", row.pk) for row in rows]
    assert len({change.actor_marker for change in changes}) == 1
    assert changes[0].actor_marker.startswith("v1:system:test:")


def test_the_keys_of_several_batches_are_drawn_in_one_statement_and_used() -> None:
    patient = PatientFactory()
    encounters = [
        Encounter(patient=patient, kind="ambulatory", starts_at=timezone.now(), source_id=f"e{i}") for i in range(2)
    ]
    observations = _observations(patient, 3)
    with CaptureQueriesContext(connection) as drawing:
        keys = draw_keys([(Encounter, encounters), (Observation, observations), (Observation, [])])
    if connection.vendor != "postgresql":
        assert keys == {}
        assert len(drawing) == 0
        return
    assert len(drawing) == 1
    assert {model: len(drawn) for model, drawn in keys.items()} == {Encounter: 2, Observation: 3}
    with CaptureQueriesContext(connection) as inserting:
        bulk_insert(Encounter, encounters, keys=keys[Encounter])
        bulk_insert(Observation, observations, keys=keys[Observation])
    assert not [q for q in inserting.captured_queries if "nextval" in q["sql"]]
    assert [row.pk for row in encounters] == sorted(keys[Encounter])
    assert [row.pk for row in observations] == sorted(keys[Observation])
    assert Observation.objects.filter(pk__in=keys[Observation]).count() == 3
    # The next INSERT of the table draws after them (the same sequence).
    later = Observation.objects.create(
        patient=patient, category="vital-signs", display="x", effective_at=timezone.now(), source_id="later"
    )
    assert later.pk > max(keys[Observation])


def test_a_batch_bulk_insert_would_not_copy_gets_no_keys_and_keys_must_fit() -> None:
    patient = PatientFactory()
    assert draw_keys([(Observation, _observations(patient, 1))]) == {}  # one row: bulk_create
    if connection.vendor != "postgresql":
        return
    rows = _observations(patient, 2)
    with pytest.raises(RuntimeError, match="one key per row"):
        bulk_insert(Observation, rows, keys=[1])
    with pytest.raises(ValueError, match="One batch per model"):
        draw_keys([(Observation, rows), (Observation, _observations(patient, 2))])
