"""PostgreSQL: the event tables become partitioned by month of ``at`` (audit/partitions.py).

``audit_accessevent``, ``audit_changeevent`` and ``audit_autheventrecord`` are re-created as
``PARTITION BY RANGE (at)`` parents with the same columns, index names and grants, one partition per
month from the oldest event to three months ahead, and a DEFAULT partition; every row is copied in id
order (ids, macs and chain links unchanged, so ``verify_audit`` is intact across the move) and the old
table dropped. The guards are reinstalled: the sealer's UPDATE is allowed on a partition of a sealable
table, and each partition gets its own TRUNCATE trigger (audit/guards.py). Marked as the application's,
so its DDL seals as ``system:migrate:audit.0011_monthly_partitions``.

First, indexes for the admin's and the rules' filters: ``(action, at)`` on access events and ``(event, at)``
on auth events; the single-column actor, patient and event indexes they make redundant are dropped.
On SQLite that re-creates the tables, so the guards are reinstalled there too.
Django's model state does not change otherwise (the primary key is ``(id, at)`` in the database only). SQLite
keeps plain tables. Backwards is a no-op: partitioned tables serve the same model, and turning them
back would copy every row again for nothing.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models
from django.utils import timezone

from audit import guards, partitions
from records.db import marked_migration


def forwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        today = timezone.now().date()
        with schema_editor.connection.cursor() as cursor:
            for table in partitions.PARTITIONED_TABLES:
                partitions.convert(cursor, table, today=today)
    guards.reinstall(schema_editor)


class Migration(migrations.Migration):
    dependencies = [("audit", "0010_access_sections")]

    operations = [
        marked_migration("audit.0011_monthly_partitions"),
        # Indexes for what the admin and the rules filter on (audit/models.py), first: the conversion
        # copies the tables' indexes as they are then. The single-column actor, patient and event
        # indexes go: the composite ones with at serve the same queries.
        migrations.AlterField(
            model_name="accessevent",
            name="actor_id",
            field=models.BigIntegerField(null=True),
        ),
        migrations.AlterField(
            model_name="accessevent",
            name="patient_id",
            field=models.BigIntegerField(null=True),
        ),
        migrations.AlterField(
            model_name="autheventrecord",
            name="event",
            field=models.CharField(max_length=32),
        ),
        migrations.AddIndex(
            model_name="accessevent",
            index=models.Index(fields=["action", "at"], name="audit_access_action_at"),
        ),
        migrations.AddIndex(
            model_name="autheventrecord",
            index=models.Index(fields=["event", "at"], name="audit_auth_event_at"),
        ),
        # Then the conversion (PostgreSQL) and the guards (both: SQLite re-creates a table to alter a
        # field, and its triggers with it).
        migrations.RunPython(forwards, migrations.RunPython.noop),
        marked_migration("audit.0011_monthly_partitions"),
    ]
