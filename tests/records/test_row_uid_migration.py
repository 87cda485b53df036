"""The row identity migration gives every existing row a UUID of its own (not one default for all)."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from accounts.models import TOTPDevice
from records.models import Medication, Patient
from tests.factories import PatientFactory, UserFactory

BEFORE = [("records", "0002_row_uid_add"), ("accounts", "0003_totpdevice_row_uid_add")]
POPULATE = [
    ("records", "records.migrations.0003_row_uid_populate"),
    ("accounts", "accounts.migrations.0004_totpdevice_row_uid_populate"),
]


def null_row_uids(*tables: str) -> None:
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"UPDATE {table} SET row_uid = NULL")  # noqa: S608


def row_uids(table: str) -> list[object]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT row_uid FROM {table}")  # noqa: S608
        return [value for (value,) in cursor.fetchall()]


@pytest.mark.django_db(transaction=True)
def test_the_populate_step_gives_each_existing_row_its_own_row_uid() -> None:
    patients = [PatientFactory() for _ in range(3)]
    for patient in patients:
        Medication.objects.create(patient=patient, display="Aspirin", dosage="75 mg", prescribed_at=patient.created_at)
    TOTPDevice.objects.create(user=UserFactory(), name="Phone", confirmed=True)
    TOTPDevice.objects.create(user=UserFactory(), name="Phone", confirmed=True)

    executor = MigrationExecutor(connection)
    # Back to the state right after the nullable column was added, with rows that have none yet.
    executor.migrate(BEFORE)
    try:
        null_row_uids("records_patient", "records_medication", "accounts_totpdevice")
        executor.loader.build_graph()
        state = executor.loader.project_state(BEFORE).apps
        for _app, module in POPULATE:
            importlib.import_module(module).assign(state, SimpleNamespace(connection=connection))
        for table, count in (("records_patient", 3), ("records_medication", 3), ("accounts_totpdevice", 2)):
            values = row_uids(table)
            assert len(values) == count
            assert None not in values
            assert len(set(values)) == count, f"{table}: rows share a row_uid"
    finally:
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
    # Unique and required again.
    assert Patient._meta.get_field("row_uid").unique
    assert len(set(row_uids("records_patient"))) == 3
