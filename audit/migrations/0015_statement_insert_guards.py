"""Direct-change guards record a statement's inserted rows at once (audit/guards.py: ROWS_INSERTED).

Each clinical table's ``<table>_row_change`` trigger now fires for UPDATE and DELETE only, and a new
statement-level ``<table>_insert_change`` trigger writes one ``audit_directchange`` row per inserted
row from the statement's transition table: the same rows, with the same columns, as the row trigger
wrote, for one trigger call per INSERT instead of one per row. ``reinstall`` replaces the triggers
(recording nothing of its own, as 0008 and 0013 do).
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

from audit import guards


def forwards(apps: Any, schema_editor: Any) -> None:
    guards.reinstall(schema_editor)


def backwards(apps: Any, schema_editor: Any) -> None:
    # Back to one row trigger for INSERT, UPDATE and DELETE (the shape before this migration).
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, trigger, _ in guards.expected_triggers():
        if trigger.endswith("_insert_change"):
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {trigger} ON public.{table}", None)
        elif trigger.endswith("_row_change"):
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {trigger} ON public.{table}", None)
            schema_editor.execute(
                f"CREATE TRIGGER {trigger} AFTER INSERT OR UPDATE OR DELETE ON public.{table} FOR EACH ROW "
                f"EXECUTE FUNCTION public.{guards.ROW_CHANGE.name}()",
                None,
            )
            schema_editor.execute(f"ALTER TABLE public.{table} ENABLE ALWAYS TRIGGER {trigger}", None)
    schema_editor.execute(f"DROP FUNCTION IF EXISTS public.{guards.ROWS_INSERTED.name}()", None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0014_rules_cursor")]

    operations = [migrations.RunPython(forwards, backwards)]
