"""Access events list the sections they showed: one event per patient per access (issue 11).

AddField only, no data migration: audit rows are append-only and their HMACs cover their content,
so events written before this keep ``sections`` empty and are read through
``audit.models.sections_of`` (which answers ``[category]`` for them).

The ALTER TABLE is on a guarded table: the migration marks its transaction (records/db.py
``marked_migration``) so the DDL recorder seals it as the application's on PostgreSQL. SQLite has no
ADD COLUMN with a default, so Django rebuilds the table there, which drops its append-only
triggers: the guards are reinstalled afterwards (a no-op on PostgreSQL, where ALTER keeps them).
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models

from audit import guards
from records.db import marked_migration


def reinstall_guards(apps: Any, schema_editor: Any) -> None:
    guards.reinstall(schema_editor)


class Migration(migrations.Migration):
    dependencies = [("audit", "0009_sealer")]

    operations = [
        marked_migration("audit.0010_access_sections"),
        migrations.AddField(
            model_name="accessevent",
            name="sections",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.RunPython(reinstall_guards, reinstall_guards, elidable=False),
        marked_migration("audit.0010_access_sections"),  # backwards runs the operations in reverse
    ]
