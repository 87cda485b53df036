"""Guard triggers on the package table (exchange 0005), now in audit/guards.py CLINICAL_TABLES: a
received package's row deleted straight in the database would let it be replayed."""

from __future__ import annotations

from typing import Any

from django.db import migrations

from audit import guards


def forwards(apps: Any, schema_editor: Any) -> None:
    guards.reinstall(schema_editor)


def backwards(apps: Any, schema_editor: Any) -> None:
    # Reversing exchange 0005 drops the table, and its triggers with it.
    pass


class Migration(migrations.Migration):
    dependencies = [("exchange", "0005_packages")]

    operations = [migrations.RunPython(forwards, backwards)]
