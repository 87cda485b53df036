"""bench/replay.py: the statements a piece of work sent, sent again alone, write the same rows (the
import bench's "database floor" is only a floor if the replay does the database's whole work)."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from bench.replay import Statement, by_table, recording, replay
from healthcrypt.bulk import bulk_insert
from records.db import mark_actor
from records.models import Observation
from tests.factories import PatientFactory, UserFactory
from tests.healthcrypt.test_bulk import _observations

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the replay speaks psycopg (PostgreSQL) only"
)


class _Undone(Exception):
    pass


def _stored(patient_id: int) -> list[tuple[object, ...]]:
    # The rows as stored (ciphertexts included), to compare byte for byte.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, row_uid, value, display, source_id FROM records_observation WHERE patient_id = %s ORDER BY id",
            [patient_id],
        )
        return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in cursor.fetchall()]


@postgres_only
@pytest.mark.django_db
def test_a_replay_writes_the_recorded_rows_again_with_the_same_keys_and_ciphertexts() -> None:
    patient = PatientFactory()
    actor = UserFactory()
    try:
        with transaction.atomic():
            # The rollback is not recorded (else the replay would undo itself, as the recorded work did).
            with recording() as notes:
                mark_actor(actor)
                bulk_insert(Observation, _observations(patient, 3))  # COPY on PostgreSQL
                Observation.objects.filter(patient_id=patient.pk).count()
            written = _stored(patient.pk)
            raise _Undone
    except _Undone:
        pass
    assert _stored(patient.pk) == []  # rolled back
    assert len(written) == 3
    assert notes.rows_copied == 3
    copies = [statement for statement in notes.statements if statement.rows is not None]
    assert [by_table(statement) for statement in copies] == ["records_observation"]

    with transaction.atomic(), connection.connection.cursor() as cursor:
        spent = replay(notes, cursor)
        again = _stored(patient.pk)
    assert again == written  # same keys, same row ids, same ciphertexts: nothing re-encrypted
    assert set(spent) >= {"records_observation", "reads"}
    assert all(seconds >= 0 for seconds in spent.values())


@postgres_only
@pytest.mark.django_db
def test_statements_are_not_noted_once_the_recording_ends() -> None:
    with recording() as notes, connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    with connection.cursor() as cursor:
        cursor.execute("SELECT 2")
    assert [statement.text for statement in notes.statements] == ["SELECT 1"]


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ('COPY "records_observation" ("id", "value") FROM STDIN', "records_observation"),
        ('INSERT INTO "audit_changeevent" ("at") VALUES (%s)', "audit_changeevent"),
        ('UPDATE "records_patient" SET "sex" = %s', "records_patient"),
        ('DELETE FROM "records_condition" WHERE "id" = %s', "records_condition"),
        ('SAVEPOINT "s1_x1"', "savepoints"),
        ('RELEASE SAVEPOINT "s1_x1"', "savepoints"),
        ("SELECT pg_catalog.set_config('healthcrypt.actor', %s, true)", "reads"),
    ],
)
def test_statements_are_grouped_by_the_table_they_write(sql: str, kind: str) -> None:
    assert by_table(Statement(sql, None)) == kind
