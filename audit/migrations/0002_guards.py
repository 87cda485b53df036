"""Append-only triggers on the audit tables; direct-change triggers on the clinical tables (PostgreSQL).

This is the first version of the guards, kept here as it was installed; audit/guards.py holds the
current one (installed by 0004_guards_v2, which replaces these functions).
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

GUARDED_TABLES = (
    "audit_accessevent",
    "audit_changeevent",
    "audit_autheventrecord",
    "audit_directchange",
    "auditlog_logentry",
)
CLINICAL_TABLES = (
    "records_patient",
    "records_careassignment",
    "records_encounter",
    "records_order",
    "records_observation",
    "records_condition",
    "records_medication",
    "records_medicationadministration",
    "records_allergy",
    "records_procedure",
    "records_immunization",
    "records_clinicalnote",
    "records_attachment",
)
MESSAGE = "audit rows are append-only"

PG_GUARD_FUNCTION = f"""
CREATE OR REPLACE FUNCTION healthcrypt_audit_append_only() RETURNS trigger AS $$
BEGIN
    IF current_setting('healthcrypt.audit_maintenance', true) = 'on' THEN
        IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
        IF TG_OP = 'UPDATE' THEN RETURN NEW; END IF;
        RETURN NULL;
    END IF;
    RAISE EXCEPTION '{MESSAGE} (% on %)', TG_OP, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""

PG_DIRECT_CHANGE_FUNCTION = """
CREATE OR REPLACE FUNCTION healthcrypt_record_row_change() RETURNS trigger AS $$
DECLARE
    changed_id bigint;
BEGIN
    IF TG_OP = 'DELETE' THEN changed_id := OLD.id; ELSE changed_id := NEW.id; END IF;
    INSERT INTO audit_directchange (at, table_name, operation, row_id, actor_marker, db_user, client_addr)
    VALUES (
        now(), TG_TABLE_NAME, TG_OP, changed_id,
        COALESCE(current_setting('healthcrypt.actor', true), ''),
        current_user,
        COALESCE(host(inet_client_addr()), '')
    );
    RETURN NULL;
END;
$$ LANGUAGE plpgsql SECURITY DEFINER;
"""


def install(schema_editor: Any) -> None:
    """Create the first version of the guard triggers for the current database vendor."""
    vendor = schema_editor.connection.vendor

    def execute(sql: str) -> None:
        # No parameters: the PL/pgSQL bodies contain '%' placeholders of their own.
        schema_editor.execute(sql, None)

    if vendor == "postgresql":
        execute(PG_GUARD_FUNCTION)
        for table in GUARDED_TABLES:
            execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION healthcrypt_audit_append_only()"
            )
            execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION healthcrypt_audit_append_only()"
            )
        execute(PG_DIRECT_CHANGE_FUNCTION)
        for table in CLINICAL_TABLES:
            execute(
                f"CREATE TRIGGER {table}_row_change AFTER INSERT OR UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION healthcrypt_record_row_change()"
            )
    elif vendor == "sqlite":
        execute("CREATE TABLE IF NOT EXISTS audit_guard_bypass (enabled integer NOT NULL)")
        for table in GUARDED_TABLES:
            for operation in ("UPDATE", "DELETE"):
                trigger = (  # constant table names, no user input
                    f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "  # noqa: S608
                    "WHEN NOT EXISTS (SELECT 1 FROM audit_guard_bypass) "
                    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
                )
                execute(trigger)


def uninstall(schema_editor: Any) -> None:
    """Drop the first version of the guards."""
    vendor = schema_editor.connection.vendor
    execute = schema_editor.execute
    if vendor == "postgresql":
        for table in GUARDED_TABLES:
            execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        for table in CLINICAL_TABLES:
            execute(f"DROP TRIGGER IF EXISTS {table}_row_change ON {table}")
        execute("DROP FUNCTION IF EXISTS healthcrypt_audit_append_only()")
        execute("DROP FUNCTION IF EXISTS healthcrypt_record_row_change()")
    elif vendor == "sqlite":
        for table in GUARDED_TABLES:
            for operation in ("update", "delete"):
                execute(f"DROP TRIGGER IF EXISTS {table}_no_{operation}")
        execute("DROP TABLE IF EXISTS audit_guard_bypass")


def forwards(apps: Any, schema_editor: Any) -> None:
    install(schema_editor)


def backwards(apps: Any, schema_editor: Any) -> None:
    uninstall(schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0001_initial"),
        ("auditlog", "__latest__"),
        ("records", "0001_initial"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
