"""Guards that cannot be redirected or silenced (audit/guards.py), on top of the first version (0002).

Replaces the trigger functions with schema-qualified SECURITY DEFINER ones with a fixed search_path,
records the login, pid, transaction id and application name, adds TRUNCATE triggers on the clinical
tables and append-only triggers on the direct-change seals, makes every trigger ENABLE ALWAYS, and,
when run by a superuser, adds event triggers that record DDL on the guarded objects. On SQLite it
(re)creates the append-only triggers, which 0003 may have dropped with the table it rebuilt.
"""

from __future__ import annotations

import importlib
from typing import Any

from django.db import migrations

from audit import guards


def forwards(apps: Any, schema_editor: Any) -> None:
    guards.install(schema_editor)


def backwards(apps: Any, schema_editor: Any) -> None:
    guards.uninstall(schema_editor)
    if schema_editor.connection.vendor == "postgresql":
        # Back to the first version's functions and triggers.
        importlib.import_module("audit.migrations.0002_guards").install(schema_editor)


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_direct_change_seals")]

    operations = [migrations.RunPython(forwards, backwards)]
