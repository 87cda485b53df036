"""The row identity migration gives every existing row a UUID of its own (not one default for all)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.db import connection, models

from accounts.models import TOTPDevice
from records.models import Medication, Patient
from tests.factories import PatientFactory, UserFactory

POPULATE = ("records.migrations.0003_row_uid_populate", "accounts.migrations.0004_totpdevice_row_uid_populate")
MODELS = (Patient, Medication, TOTPDevice)


@contextmanager
def nullable_row_uids() -> Iterator[None]:
    """The schema between steps 1 and 3 of the migration: row_uid nullable and not unique."""
    fields = []
    for model in MODELS:
        current = model._meta.get_field("row_uid")
        relaxed = models.UUIDField(null=True, editable=False)
        relaxed.set_attributes_from_name("row_uid")
        relaxed.model = model
        fields.append((model, current, relaxed))
    with connection.schema_editor() as editor:
        for model, current, relaxed in fields:
            editor.alter_field(model, current, relaxed)
    try:
        yield
    finally:
        with connection.schema_editor() as editor:
            for model, current, relaxed in fields:
                editor.alter_field(model, relaxed, current)


def row_uids(model: type[models.Model]) -> list[object]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT row_uid FROM {model._meta.db_table}")  # noqa: S608
        return [value for (value,) in cursor.fetchall()]


@pytest.mark.django_db(transaction=True)
def test_the_populate_step_gives_each_existing_row_its_own_row_uid() -> None:
    patients = [PatientFactory() for _ in range(3)]
    for patient in patients:
        Medication.objects.create(patient=patient, display="Aspirin", dosage="75 mg", prescribed_at=patient.created_at)
    TOTPDevice.objects.create(user=UserFactory(), name="Phone", confirmed=True)
    TOTPDevice.objects.create(user=UserFactory(), name="Phone", confirmed=True)

    with nullable_row_uids():
        # Rows as they were before the migration: no identity yet.
        with connection.cursor() as cursor:
            for model in MODELS:
                cursor.execute(f"UPDATE {model._meta.db_table} SET row_uid = NULL")  # noqa: S608
        for module in POPULATE:
            importlib.import_module(module).assign(apps, SimpleNamespace(connection=connection))
        for model, count in ((Patient, 3), (Medication, 3), (TOTPDevice, 2)):
            values = row_uids(model)
            assert len(values) == count
            assert None not in values
            assert len(set(values)) == count, f"{model._meta.label}: rows share a row_uid"
