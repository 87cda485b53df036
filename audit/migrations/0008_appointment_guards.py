"""Guard triggers on the appointments table (records 0008), and the DDL recorder naming it.

``guards.install`` skips a table whose migration has not run yet; this runs after the one that
creates ``records_appointment`` and reinstalls the guards (recording nothing of its own).
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

from audit import guards


def forwards(apps: Any, schema_editor: Any) -> None:
    guards.reinstall(schema_editor)


def backwards(apps: Any, schema_editor: Any) -> None:
    # records 0008 drops the table, and its triggers with it, when it is reversed.
    pass


class Migration(migrations.Migration):
    dependencies = [("audit", "0007_marked_ddl"), ("records", "0008_appointments")]

    operations = [migrations.RunPython(forwards, backwards)]
