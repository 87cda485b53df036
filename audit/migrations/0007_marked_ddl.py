"""The DDL recorder copies the actor marker (audit/guards.py RECORD_DDL), as the row triggers do.

From here on a migration that alters a clinical table marks its own transaction
(records/db.py: marked_migration), so its schema change seals as the application's and only DDL
made outside the application alerts. Earlier records migrations ran before the guards on a fresh
database (run_before audit 0004) for the same reason; later ones depend on this one instead.
Nothing of this reinstall is itself recorded (guards.reinstall drops the event triggers first).
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

from audit import guards


def forwards(apps: Any, schema_editor: Any) -> None:
    guards.reinstall(schema_editor)


def backwards(apps: Any, schema_editor: Any) -> None:
    # The previous recorder differs only in writing an empty marker; the current one is kept, which
    # records at least as much.
    pass


class Migration(migrations.Migration):
    dependencies = [("audit", "0006_activity_baseline")]

    operations = [migrations.RunPython(forwards, backwards)]
