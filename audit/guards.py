"""Database-level guards of the audit trail (DESIGN.md §6), installed by audit/migrations/0004_guards_v2.py.

- Append-only: triggers reject UPDATE and DELETE (and, on PostgreSQL, TRUNCATE) on every audit table,
  on SQLite and on PostgreSQL alike. The only way past them is the maintenance switch of the test
  runner's ``flush`` (audit/management/commands/flush.py): on SQLite a row in ``audit_guard_bypass``;
  on PostgreSQL the setting ``healthcrypt.audit_maintenance = on`` *and* a login that is a member of
  the role ``healthcrypt_maintenance`` *and* a database whose name starts with ``test_``. Any session
  can set a setting; only the test runner's flush creates that role, and its existence outside a test
  database is itself reported (:func:`guard_problems`).
- Direct changes (PostgreSQL): triggers on every clinical table write one ``audit_directchange`` row
  per row changed (and one per TRUNCATE): a row trigger for UPDATE and DELETE, and for INSERT (and
  COPY) one statement-level trigger that writes a row for each row of the statement's transition
  table (audit 0015; a bulk INSERT of n rows is one trigger call, not n). Each row carries the login
  (``session_user``, not ``current_user``, which inside a SECURITY DEFINER function is the owner),
  address, backend pid, transaction id, application_name and the application's actor marker
  (records/db.py). The application seals those
  rows into a chain and checks the marker's MAC (audit/sealing.py).
- Cannot be redirected: every function is SECURITY DEFINER with ``search_path = pg_catalog, pg_temp``
  and names every object it uses with its schema, so a temporary table or function of the caller's
  cannot stand in for ``public.audit_directchange``.
- Cannot be silenced quietly: every trigger is ``ENABLE ALWAYS``, so ``session_replication_role =
  replica`` does not switch it off; :func:`guard_problems` reports a missing or disabled trigger, a
  trigger that calls another function or fires differently (fewer events, another level, a WHEN
  condition, a column list, no transition table), and a function whose body or settings were changed; it runs
  in ``verify_audit`` and as a system check. When the migrating role is a superuser, an event trigger
  also records DDL on the guarded objects (``ALTER TABLE ... DISABLE TRIGGER``, ``DROP TRIGGER``,
  ``CREATE OR REPLACE FUNCTION``) into ``audit_directchange`` as operation ``DDL``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from audit.partitions import PARTITIONED_TABLES, partition_problems

GUARDED_TABLES = (
    "audit_accessevent",
    "audit_changeevent",
    "audit_autheventrecord",
    "audit_directchange",
    "audit_directchangeseal",
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
    "records_breakglassgrant",
    "records_appointment",
    "records_diagnosticreport",
    "records_imagingstudy",
    # HL7 v2 messages as received (exchange/models.py): encrypted, but a row deleted or rewritten
    # straight in the database must be seen like any clinical row.
    "exchange_hl7message",
    # Packages sent and received (exchange/packages.py): a row deleted straight in the database would
    # let a received package be replayed, so such a change must be seen.
    "exchange_package",
)
MESSAGE = "audit rows are append-only"
MAINTENANCE_ROLE = "healthcrypt_maintenance"
TEST_DATABASE_PREFIX = "test_"
SEARCH_PATH = "pg_catalog, pg_temp"  # pg_temp last: a caller's temporary objects never shadow ours
EVENT_TRIGGERS = ("healthcrypt_ddl_end", "healthcrypt_ddl_drop")


@dataclass(frozen=True)
class Function:
    name: str
    returns: str
    body: str
    volatility: str = "VOLATILE"

    def create(self) -> str:
        # $fn$ quoting: the body is stored verbatim as pg_proc.prosrc, which guard_problems compares.
        return (
            f"CREATE OR REPLACE FUNCTION public.{self.name}() RETURNS {self.returns} LANGUAGE plpgsql "
            f"{self.volatility} SECURITY DEFINER SET search_path = {SEARCH_PATH} AS $fn${self.body}$fn$"
        )


# Open only for the test runner's flush: the setting, a test database, and membership of a role that
# only flush creates. Any one alone is not enough: any session can set a setting, and the owner can
# name a database (but then it is another database).
MAINTENANCE = Function(
    "healthcrypt_audit_maintenance",
    "boolean",
    f"""
BEGIN
    IF pg_catalog.current_setting('healthcrypt.audit_maintenance', true) IS DISTINCT FROM 'on' THEN
        RETURN false;
    END IF;
    IF NOT pg_catalog.starts_with(pg_catalog.current_database()::text, '{TEST_DATABASE_PREFIX}') THEN
        RETURN false;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = '{MAINTENANCE_ROLE}') THEN
        RETURN false;
    END IF;
    RETURN pg_catalog.pg_has_role(SESSION_USER, '{MAINTENANCE_ROLE}', 'MEMBER');
END;
""",  # noqa: S608  (constants of this module, no input)
    "STABLE",
)

# The event tables whose rows the sealer links into their chain after they were written (audit/sealer.py).
SEALABLE_TABLES = ("audit_accessevent", "audit_changeevent", "audit_autheventrecord")
CHAIN_COLUMNS = ("partition", "seq", "prev_hash", "hash")

# Rejects every UPDATE and DELETE but one: the sealer's, which gives an unsealed event row (hash empty)
# its place in the chain and changes no other column. The IFs are nested so that OLD.hash is only read
# on tables that have it. On PostgreSQL the event tables are partitioned by month (audit/partitions.py):
# the row trigger fires on the partition, whose name is not the table's, so a partition counts as its
# parent when the catalogue says it is attached to one of the sealable tables (TG_RELID ->
# pg_inherits), not by a name rule a table of another kind could imitate.
APPEND_ONLY = Function(
    "healthcrypt_audit_append_only",
    "trigger",
    f"""
BEGIN
    IF public.healthcrypt_audit_maintenance() THEN
        IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
        IF TG_OP = 'UPDATE' THEN RETURN NEW; END IF;
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' AND (TG_TABLE_NAME IN ({", ".join(f"'{t}'" for t in SEALABLE_TABLES)}) OR EXISTS (
        SELECT 1 FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
        WHERE i.inhrelid = TG_RELID AND p.relnamespace = 'public'::pg_catalog.regnamespace
          AND p.relname IN ({", ".join(f"'{t}'" for t in SEALABLE_TABLES)}))) THEN
        IF OLD.hash = '' AND NEW.hash <> '' AND NEW.seq IS NOT NULL
           AND (pg_catalog.to_jsonb(NEW) - '{{{",".join(CHAIN_COLUMNS)}}}'::text[])
               = (pg_catalog.to_jsonb(OLD) - '{{{",".join(CHAIN_COLUMNS)}}}'::text[]) THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION '{MESSAGE} (% on %)', TG_OP, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END;
""",  # noqa: S608  (constants of this module, no input)
)

# What a guard records of each changed row: the columns of ``audit_directchange`` and, after the row's
# id, the same values for the row trigger and the statement trigger (``{row_id}``), so that the two
# cannot drift apart. The functions' text is compared with what is installed (guard_problems).
_CHANGE_INSERT = """    INSERT INTO public.audit_directchange
        (at, table_name, operation, row_id, actor_marker, db_user, client_addr, backend_pid, txid,
         application_name, command)"""
_CHANGE_VALUES = """        pg_catalog.now(), TG_TABLE_NAME, TG_OP, {row_id},
        pg_catalog.left(COALESCE(pg_catalog.current_setting('healthcrypt.actor', true), ''), 200),
        SESSION_USER,
        COALESCE(pg_catalog.host(pg_catalog.inet_client_addr()), ''),
        pg_catalog.pg_backend_pid(),
        pg_catalog.txid_current(),
        pg_catalog.left(COALESCE(pg_catalog.current_setting('application_name', true), ''), 64),
        ''"""

# One row per changed row; one row with no row id per TRUNCATE (statement level). The test runner's
# flush truncates every table between tests, in maintenance: that is not recorded.
ROW_CHANGE = Function(
    "healthcrypt_record_row_change",
    "trigger",
    f"""
DECLARE
    changed_id bigint;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        IF public.healthcrypt_audit_maintenance() THEN RETURN NULL; END IF;
        changed_id := NULL;
    ELSIF TG_OP = 'DELETE' THEN
        changed_id := OLD.id;
    ELSE
        changed_id := NEW.id;
    END IF;
{_CHANGE_INSERT}
    VALUES (
{_CHANGE_VALUES.format(row_id="changed_id")}
    );
    RETURN NULL;
END;
""",
)

# The rows of one INSERT, at once (statement level, from the statement's transition table): one row per
# inserted row, with exactly the columns ROW_CHANGE writes for it, in the order of the rows' ids. A
# bulk INSERT of n rows (an import) then costs one trigger call and one INSERT ... SELECT instead of n
# of each. ``inserted_rows`` is an ephemeral relation of the trigger: the parser resolves it before
# any schema, so no table of the caller's can stand in for it. UPDATE and DELETE stay row-level
# (ROW_CHANGE): transition tables hold one event per trigger.
ROWS_INSERTED = Function(
    "healthcrypt_record_rows_inserted",
    "trigger",
    f"""
BEGIN
{_CHANGE_INSERT}
    SELECT
{_CHANGE_VALUES.format(row_id="inserted.id")}
    FROM inserted_rows AS inserted
    ORDER BY inserted.id;
    RETURN NULL;
END;
""",  # noqa: S608  (constants of this module, no input)
)
INSERTED_ROWS = "inserted_rows"

# DDL on our objects (event triggers, superuser only). Reports the command and the object, never
# the statement text (a DEFAULT could hold anything). It copies the actor marker as the row triggers
# do: a migration run by the application marks its transaction (records/db.py: marked_migration), so
# its schema changes seal as the application's; DDL typed in psql carries no valid marker.
RECORD_DDL = Function(
    "healthcrypt_record_ddl",
    "event_trigger",
    """
DECLARE
    item record;
    identities text[];
BEGIN
    IF TG_EVENT = 'sql_drop' THEN
        identities := ARRAY(SELECT object_identity FROM pg_catalog.pg_event_trigger_dropped_objects());
    ELSE
        identities := ARRAY(SELECT object_identity FROM pg_catalog.pg_event_trigger_ddl_commands());
    END IF;
    FOR item IN SELECT DISTINCT identity FROM pg_catalog.unnest(identities) AS identity LOOP
        IF item.identity ~ '{GUARDED_OBJECTS}' THEN
            INSERT INTO public.audit_directchange
                (at, table_name, operation, row_id, actor_marker, db_user, client_addr, backend_pid, txid,
                 application_name, command)
            VALUES (
                pg_catalog.now(), pg_catalog.left(item.identity, 64), 'DDL', NULL,
                pg_catalog.left(COALESCE(pg_catalog.current_setting('healthcrypt.actor', true), ''), 200),
                SESSION_USER,
                COALESCE(pg_catalog.host(pg_catalog.inet_client_addr()), ''),
                pg_catalog.pg_backend_pid(), pg_catalog.txid_current(),
                pg_catalog.left(COALESCE(pg_catalog.current_setting('application_name', true), ''), 64),
                pg_catalog.left(TG_TAG, 32)
            );
        END IF;
    END LOOP;
END;
""",
)

# Only DDL on what the guards protect is recorded: the guarded and clinical tables (and the triggers
# on them) and our own functions. New tables of other kinds (alerts, reports) are not evidence.
# A monthly or DEFAULT partition of an event table counts as its table (audit/partitions.py), so disabling a
# trigger on one partition, or creating, detaching or dropping one, is recorded too.
GUARDED_OBJECTS = (
    "(^|[ .])("
    + "|".join((*GUARDED_TABLES, *CLINICAL_TABLES))
    + ")(_y[0-9]{4}m[0-9]{2}|_default)?($|[ ])|(^|[ .])healthcrypt_"
)
RECORD_DDL = Function(
    RECORD_DDL.name,
    RECORD_DDL.returns,
    RECORD_DDL.body.replace("{GUARDED_OBJECTS}", GUARDED_OBJECTS),
    RECORD_DDL.volatility,
)

FUNCTIONS = (MAINTENANCE, APPEND_ONLY, ROW_CHANGE, ROWS_INSERTED)


def expected_triggers() -> list[tuple[str, str, str]]:
    """(table, trigger, function) for every trigger the guards need on PostgreSQL."""
    triggers = []
    for table in GUARDED_TABLES:
        triggers.append((table, f"{table}_append_only", APPEND_ONLY.name))
        triggers.append((table, f"{table}_no_truncate", APPEND_ONLY.name))
    for table in CLINICAL_TABLES:
        triggers.append((table, f"{table}_row_change", ROW_CHANGE.name))
        triggers.append((table, f"{table}_insert_change", ROWS_INSERTED.name))
        triggers.append((table, f"{table}_truncate_change", ROW_CHANGE.name))
    return triggers


# pg_trigger.tgtype bits (PostgreSQL's catalog/pg_trigger.h).
_ROW, _BEFORE, _INSERT, _DELETE, _UPDATE, _TRUNCATE = 1, 2, 4, 8, 16, 32


@dataclass(frozen=True)
class Shape:
    """When a guard trigger fires: what ``pg_trigger`` must say for it to catch every change it guards."""

    sql: str  # after CREATE TRIGGER name, with {t} for the table
    tgtype: int
    new_table: str | None = None  # the transition table's name (REFERENCING NEW TABLE AS ...)


_SHAPES = {
    "_append_only": Shape("BEFORE UPDATE OR DELETE ON {t} FOR EACH ROW", _ROW | _BEFORE | _UPDATE | _DELETE),
    "_no_truncate": Shape("BEFORE TRUNCATE ON {t} FOR EACH STATEMENT", _BEFORE | _TRUNCATE),
    "_row_change": Shape("AFTER UPDATE OR DELETE ON {t} FOR EACH ROW", _ROW | _UPDATE | _DELETE),
    "_insert_change": Shape(
        f"AFTER INSERT ON {{t}} REFERENCING NEW TABLE AS {INSERTED_ROWS} FOR EACH STATEMENT", _INSERT, INSERTED_ROWS
    ),
    "_truncate_change": Shape("AFTER TRUNCATE ON {t} FOR EACH STATEMENT", _TRUNCATE),
}


def trigger_shape(trigger: str) -> Shape:
    """The shape of the guard trigger named ``trigger`` (by its suffix)."""
    for suffix, shape in _SHAPES.items():
        if trigger.endswith(suffix):
            return shape
    raise KeyError(trigger)


def _pg_trigger_sql(table: str, trigger: str, function: str) -> str:
    when = trigger_shape(trigger).sql
    return f"CREATE TRIGGER {trigger} {when.format(t=f'public.{table}')} EXECUTE FUNCTION public.{function}()"


def install(schema_editor: Any) -> None:
    """Create (or bring up to date) the guards for the current database vendor. Idempotent."""
    vendor = schema_editor.connection.vendor

    def execute(statement: str) -> None:
        # No parameters: the PL/pgSQL bodies contain '%' placeholders of their own.
        schema_editor.execute(statement, None)

    if vendor == "postgresql":
        for function in FUNCTIONS:
            execute(function.create())
        with schema_editor.connection.cursor() as cursor:
            # A table this code knows but whose migration has not run yet gets its triggers from the
            # audit migration that follows the one creating it (as audit 0008 does for appointments).
            existing = set(schema_editor.connection.introspection.table_names(cursor))
        for table, trigger, function_name in expected_triggers():
            if table not in existing:
                continue
            # Drop and create: an existing trigger of this name may call the first version's function.
            execute(f"DROP TRIGGER IF EXISTS {trigger} ON public.{table}")
            execute(_pg_trigger_sql(table, trigger, function_name))
            execute(f"ALTER TABLE public.{table} ENABLE ALWAYS TRIGGER {trigger}")
        with schema_editor.connection.cursor() as cursor:
            for table in PARTITIONED_TABLES:
                if table in existing:
                    install_partition_guards(cursor, table)
        with schema_editor.connection.cursor() as cursor:
            cursor.execute("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user")
            superuser = bool(cursor.fetchone()[0])
        if superuser:
            # Event triggers need a superuser; without one, guard_problems still finds a disabled
            # trigger, but not one that was disabled and re-enabled in between (see database-roles.md).
            execute(RECORD_DDL.create())
            for name, event, tags in (
                (
                    "healthcrypt_ddl_end",
                    "ddl_command_end",
                    "'ALTER TABLE', 'ALTER FUNCTION', 'CREATE FUNCTION', 'CREATE TRIGGER', 'ALTER TRIGGER', "
                    "'CREATE TABLE'",
                ),
                ("healthcrypt_ddl_drop", "sql_drop", "'DROP TRIGGER', 'DROP FUNCTION', 'DROP TABLE'"),
            ):
                execute(f"DROP EVENT TRIGGER IF EXISTS {name}")
                execute(
                    f"CREATE EVENT TRIGGER {name} ON {event} WHEN TAG IN ({tags}) "
                    f"EXECUTE FUNCTION public.{RECORD_DDL.name}()"
                )
                execute(f"ALTER EVENT TRIGGER {name} ENABLE ALWAYS")
    elif vendor == "sqlite":
        execute("CREATE TABLE IF NOT EXISTS audit_guard_bypass (enabled integer NOT NULL)")
        with schema_editor.connection.cursor() as cursor:
            existing = set(schema_editor.connection.introspection.table_names(cursor))
        for table in GUARDED_TABLES:
            if table not in existing:
                continue
            for operation in ("UPDATE", "DELETE"):
                when = "NOT EXISTS (SELECT 1 FROM audit_guard_bypass)"
                if operation == "UPDATE" and table in SEALABLE_TABLES:
                    # Re-created each time: it names the table's columns as they are now.
                    execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
                    when += f" AND NOT ({_sqlite_seal_only(schema_editor.connection, table)})"
                trigger = (  # constant table and column names, no user input
                    f"CREATE TRIGGER IF NOT EXISTS {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                    f"WHEN {when} BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
                )
                execute(trigger)


def install_partition_guards(cursor: Any, table: str, only: Iterable[str] | None = None) -> None:
    """Give every partition of ``table`` its guards (PostgreSQL; nothing for a table that is not partitioned).

    The parent's row trigger is cloned onto each partition by PostgreSQL, but a statement-level trigger
    is not: a TRUNCATE of one partition by name would pass the parent's. So each partition gets its own
    ``<table>_no_truncate``, and the clones are made ``ENABLE ALWAYS`` like the parent's. ``only``:
    just these (new) partitions.
    """
    for partition in partition_names(cursor, table) if only is None else only:
        trigger = f"{table}_no_truncate"
        cursor.execute(f"DROP TRIGGER IF EXISTS {trigger} ON public.{partition}")
        cursor.execute(
            f"CREATE TRIGGER {trigger} BEFORE TRUNCATE ON public.{partition} FOR EACH STATEMENT "
            f"EXECUTE FUNCTION public.{APPEND_ONLY.name}()"
        )
        for name in (f"{table}_append_only", trigger):
            cursor.execute(f"ALTER TABLE public.{partition} ENABLE ALWAYS TRIGGER {name}")


def partition_names(cursor: Any, table: str) -> list[str]:
    """The partitions attached to ``table`` (none for a plain table)."""
    cursor.execute(
        "SELECT c.relname FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = pg_catalog.to_regclass(%s) ORDER BY c.relname",
        [f"public.{table}"],
    )
    return [str(row[0]) for row in cursor.fetchall()]


def _sqlite_seal_only(connection: Any, table: str) -> str:
    """SQLite's condition for the sealer's UPDATE: an unsealed row gets its chain columns, nothing else changes."""
    with connection.cursor() as cursor:
        columns = [c.name for c in connection.introspection.get_table_description(cursor, table)]
    same = " AND ".join(f'NEW."{c}" IS OLD."{c}"' for c in columns if c not in CHAIN_COLUMNS)
    return f"OLD.hash = '' AND NEW.hash <> '' AND NEW.seq IS NOT NULL AND {same}"


def reinstall(schema_editor: Any) -> None:
    """Bring the guards up to this code's version on a database that has them, recording nothing.

    The event triggers go first (DROP EVENT TRIGGER is not itself an event), so replacing the DDL
    recorder and re-creating the row triggers is not recorded as DDL on the guarded objects;
    :func:`install` creates the event triggers again at its end.
    """
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user")
            superuser = bool(cursor.fetchone()[0])
        if superuser:
            for name in EVENT_TRIGGERS:
                schema_editor.execute(f"DROP EVENT TRIGGER IF EXISTS {name}", None)
    install(schema_editor)


def uninstall(schema_editor: Any) -> None:
    """Drop what :func:`install` added on top of the first version (audit/migrations/0002_guards.py)."""
    vendor = schema_editor.connection.vendor
    execute = schema_editor.execute
    if vendor == "postgresql":
        for name in EVENT_TRIGGERS:
            execute(f"DROP EVENT TRIGGER IF EXISTS {name}")
        execute(f"DROP FUNCTION IF EXISTS public.{RECORD_DDL.name}()")
        for table, trigger, _ in expected_triggers():
            execute(f"DROP TRIGGER IF EXISTS {trigger} ON public.{table}")
        for function in reversed(FUNCTIONS):
            execute(f"DROP FUNCTION IF EXISTS public.{function.name}()")
    elif vendor == "sqlite":
        for operation in ("update", "delete"):
            execute(f"DROP TRIGGER IF EXISTS audit_directchangeseal_no_{operation}")


def ensure_maintenance_role(cursor: Any) -> None:
    """Create the maintenance role and make the current login a member (the test runner's flush only).

    Roles belong to the whole cluster, so concurrent test runs may race to create it: a duplicate
    is fine. Never call this on a production cluster: guard_problems reports the role there.
    """
    cursor.execute(
        sql.SQL(
            "DO $do$ BEGIN CREATE ROLE {} NOLOGIN; "
            "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $do$"
        ).format(sql.Identifier(MAINTENANCE_ROLE))
    )
    cursor.execute("SELECT pg_catalog.pg_has_role(SESSION_USER, %s, 'MEMBER')", [MAINTENANCE_ROLE])
    if not cursor.fetchone()[0]:
        cursor.execute(sql.SQL("GRANT {} TO SESSION_USER").format(sql.Identifier(MAINTENANCE_ROLE)))


def guard_problems(connection: Any) -> list[str]:
    """Every missing, disabled or altered guard of this database, one sentence each (empty: all in place).

    PostgreSQL: each trigger exists, is ``ENABLE ALWAYS`` and calls its own function; each function is
    SECURITY DEFINER with the fixed search_path and its installed body; no event trigger of ours is
    disabled; the maintenance role does not exist outside a test database. SQLite: each append-only
    trigger exists and the maintenance switch is closed.
    """
    if connection.vendor == "postgresql":
        return _pg_guard_problems(connection)
    if connection.vendor == "sqlite":
        return _sqlite_guard_problems(connection)
    return []


def _pg_guard_problems(connection: Any) -> list[str]:
    problems: list[str] = []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, t.tgname, t.tgenabled, p.proname, pn.nspname, t.tgtype, t.tgnewtable, t.tgoldtable, "
            "t.tgqual IS NOT NULL OR t.tgnargs <> 0 OR pg_catalog.cardinality(t.tgattr::pg_catalog.int2[]) <> 0 "
            "FROM pg_catalog.pg_trigger t "
            "JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public' "
            "JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid "
            "JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace "
            "WHERE NOT t.tgisinternal"
        )
        found = {
            (table, trigger): (enabled, f"{schema}.{function}", (tgtype, new_table, old_table, narrowed))
            for table, trigger, enabled, function, schema, tgtype, new_table, old_table, narrowed in cursor
        }
        expected = expected_triggers()
        for table in PARTITIONED_TABLES:  # every partition is guarded as its table is
            for partition in partition_names(cursor, table):
                expected.append((partition, f"{table}_append_only", APPEND_ONLY.name))
                expected.append((partition, f"{table}_no_truncate", APPEND_ONLY.name))
        problems.extend(partition_problems(cursor))
        for table, trigger, function in expected:
            if (table, trigger) not in found:
                problems.append(f"guard trigger {trigger} on {table} is missing")
                continue
            enabled, calls, (tgtype, new_table, old_table, narrowed) = found[(table, trigger)]
            if enabled != "A":
                state = {"D": "disabled", "O": "not ENABLE ALWAYS (replica sessions skip it)", "R": "replica-only"}
                problems.append(f"guard trigger {trigger} on {table} is {state.get(enabled, enabled)}")
            if calls != f"public.{function}":
                problems.append(f"guard trigger {trigger} on {table} calls {calls}, not public.{function}")
            # Same name, same function, but firing on fewer events, at another level, under a WHEN
            # condition or a column list, or without its transition table, it would miss changes.
            shape = trigger_shape(trigger)
            if tgtype != shape.tgtype or new_table != shape.new_table or old_table is not None or narrowed:
                problems.append(
                    f"guard trigger {trigger} on {table} was redefined: it does not fire as installed "
                    f"({shape.sql.format(t=table)})"
                )
        cursor.execute(
            "SELECT p.proname, p.prosecdef, p.proconfig, p.prosrc FROM pg_catalog.pg_proc p "
            "JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace AND n.nspname = 'public' "
            "WHERE p.proname = ANY(%s)",
            [[f.name for f in (*FUNCTIONS, RECORD_DDL)]],
        )
        functions = {name: (definer, config or [], source) for name, definer, config, source in cursor}
        cursor.execute(
            "SELECT evtname, evtenabled FROM pg_catalog.pg_event_trigger WHERE evtname = ANY(%s)",
            [list(EVENT_TRIGGERS)],
        )
        event_triggers = dict(cursor.fetchall())
        cursor.execute(
            "SELECT pg_catalog.current_database()::text, EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s)",
            [MAINTENANCE_ROLE],
        )
        database, maintenance_role = cursor.fetchone()
    checked = list(FUNCTIONS) + ([RECORD_DDL] if event_triggers else [])
    for guard in checked:
        if guard.name not in functions:
            problems.append(f"guard function public.{guard.name}() is missing")
            continue
        definer, config, source = functions[guard.name]
        if not definer:
            problems.append(f"guard function public.{guard.name}() is not SECURITY DEFINER")
        if f"search_path={SEARCH_PATH}" not in config:
            problems.append(f"guard function public.{guard.name}() has no fixed search_path ({SEARCH_PATH})")
        if source != guard.body:
            problems.append(f"guard function public.{guard.name}() was replaced: its body is not the installed one")
    for name, enabled in sorted(event_triggers.items()):
        if enabled != "A":
            problems.append(f"event trigger {name} is not ENABLE ALWAYS (state {enabled})")
    if maintenance_role and not database.startswith(TEST_DATABASE_PREFIX):
        problems.append(
            f"the maintenance role {MAINTENANCE_ROLE} exists on this cluster: its members can switch the "
            "append-only guards off in test databases; drop it (only the test runner creates it)"
        )
    return problems


def _sqlite_guard_problems(connection: Any) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        names = {row[0] for row in cursor.fetchall()}
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'audit_guard_bypass'")
        has_bypass = cursor.fetchone() is not None
        open_switch = False
        if has_bypass:
            cursor.execute("SELECT EXISTS (SELECT 1 FROM audit_guard_bypass)")
            open_switch = bool(cursor.fetchone()[0])
    problems = [
        f"guard trigger {table}_no_{operation} on {table} is missing"
        for table in GUARDED_TABLES
        for operation in ("update", "delete")
        if f"{table}_no_{operation}" not in names
    ]
    if open_switch:
        problems.append("the maintenance switch (a row in audit_guard_bypass) is open: the append-only guards are off")
    return problems
