"""Guard triggers on the HL7 message table (exchange 0001), now in audit/guards.py CLINICAL_TABLES.

``guards.install`` skips a table whose migration has not run yet; this runs after the one that
creates it and reinstalls the guards (recording nothing of its own), as audit 0008 and 0013 do for
the records tables added after the guards.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

from audit import guards


def forwards(apps: Any, schema_editor: Any) -> None:
    guards.reinstall(schema_editor)


def backwards(apps: Any, schema_editor: Any) -> None:
    # Reversing exchange 0001 drops the table, and its triggers with it.
    pass


class Migration(migrations.Migration):
    dependencies = [("exchange", "0003_partners"), ("audit", "0013_import_guards")]

    operations = [migrations.RunPython(forwards, backwards)]
