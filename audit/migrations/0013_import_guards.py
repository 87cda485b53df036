"""Guard triggers on the imported reports' and studies' tables (records 0009).

``guards.install`` skips a table whose migration has not run yet; this runs after the one that
creates them and reinstalls the guards (recording nothing of its own), as 0008 did for appointments.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

from audit import guards


def forwards(apps: Any, schema_editor: Any) -> None:
    guards.reinstall(schema_editor)


def backwards(apps: Any, schema_editor: Any) -> None:
    # records 0009 drops the tables, and their triggers with them, when it is reversed.
    pass


class Migration(migrations.Migration):
    dependencies = [("audit", "0012_alert_subject_change_kind"), ("records", "0009_imported_reports_and_studies")]

    operations = [migrations.RunPython(forwards, backwards)]
