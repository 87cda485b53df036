"""Append-only triggers on the audit tables; direct-change triggers on the clinical tables (PostgreSQL)."""

from __future__ import annotations

from typing import Any

from django.db import migrations

from audit import guards


def forwards(apps: Any, schema_editor: Any) -> None:
    guards.install(schema_editor)


def backwards(apps: Any, schema_editor: Any) -> None:
    guards.uninstall(schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0001_initial"),
        ("auditlog", "__latest__"),
        ("records", "0001_initial"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
