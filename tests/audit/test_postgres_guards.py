"""PostgreSQL only: direct changes to clinical rows are caught, and neither the application's own role
nor the owner can quietly get past the guards (issue 8, attacks 1, 2, 3 and 5).

The attacker logs in with psycopg as a role made by ``audit_db_role``'s statements (the server trusts
127.0.0.1, so any LOGIN role can connect), or as the owner/superuser the tests run as.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from io import StringIO

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from audit import guards
from audit.chain import AuditChainHead
from audit.checks import check_database_guards
from audit.dbrole import event_partitions, grant_statements
from audit.models import Alert, AuthEventRecord, DirectChange, DirectChangeSeal
from audit.sealer import seal_events
from audit.sealing import seal_direct_changes
from audit.services import auth_event_record
from audit.verify import verify_all
from records.db import marked_migration
from records.models import CareAssignment
from records.services import note_write
from tests.audit.test_integrity import guards_bypassed
from tests.factories import PatientFactory, assign

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="these guards exist on PostgreSQL only"),
    pytest.mark.django_db(transaction=True),
]


def raw_connection(user: str | None = None) -> psycopg.Connection:
    """A connection of its own, as ``user`` (default: the tests' own login, the owner and superuser)."""
    s = connection.settings_dict
    return psycopg.connect(
        dbname=s["NAME"],
        user=user or s["USER"],
        host=s["HOST"] or None,
        port=s["PORT"] or None,
        password=None if user else (s["PASSWORD"] or None),
        autocommit=True,
    )


def as_owner(statement: str, params: list[object] | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])


@pytest.fixture
def app_role() -> Iterator[str]:
    """A LOGIN role with exactly the application's grants (audit/dbrole.py); dropped afterwards."""
    role = f"hc_attacker_{secrets.token_hex(4)}"
    as_owner(psycopg.sql.SQL("CREATE ROLE {} LOGIN").format(psycopg.sql.Identifier(role)).as_string(None))
    with connection.cursor() as cursor:
        for statement in grant_statements(role, event_partitions(cursor)):
            cursor.execute(statement.as_string(cursor.connection))
    try:
        yield role
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [role])
            name = psycopg.sql.Identifier(role).as_string(cursor.connection)
            cursor.execute(f"DROP OWNED BY {name}")
            cursor.execute(f"DROP ROLE {name}")


@pytest.fixture
def restore_guards() -> Iterator[None]:
    """For tests that switch a guard off as the owner: put every guard back afterwards."""
    yield
    with connection.schema_editor() as editor:
        guards.install(editor)


def run_verify() -> tuple[int, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("verify_audit", stdout=out, stderr=err)
    except CommandError as exc:
        return 1, err.getvalue() + str(exc)
    return 0, out.getvalue()


def seal_of(change: DirectChange) -> DirectChangeSeal:
    return DirectChangeSeal.objects.get(direct_change_id=change.pk)


# --- The legitimate path ----------------------------------------------------------------------------


def test_application_writes_carry_a_verified_marker(physician: User) -> None:
    patient = PatientFactory()
    assign(physician, patient)
    note = note_write(actor=physician, patient_id=patient.pk, kind="progress", text="Fine.")
    marked = DirectChange.objects.get(table_name="records_clinicalnote", row_id=note.pk)
    assert marked.actor_marker.startswith(f"v1:user:{physician.pk}:{marked.txid}:")
    assert marked.db_user == connection.settings_dict["USER"]
    assert marked.backend_pid
    assert marked.txid
    result = seal_direct_changes()
    assert result.sealed >= 1
    seal = seal_of(marked)
    assert seal.verified
    assert seal.actor == f"user:{physician.pk}"
    assert not DirectChangeSeal.objects.filter(table_name="records_clinicalnote", verified=False).exists()


def test_seal_audit_is_idempotent(physician: User) -> None:
    patient = PatientFactory()
    assign(physician, patient)
    note_write(actor=physician, patient_id=patient.pk, kind="progress", text="Fine.")
    first, second = StringIO(), StringIO()
    call_command("seal_audit", stdout=first, stderr=StringIO())
    sealed = DirectChangeSeal.objects.count()
    call_command("seal_audit", stdout=second, stderr=StringIO())
    assert sealed == DirectChange.objects.count() > 0
    assert DirectChangeSeal.objects.count() == sealed
    assert "Sealed 0 direct change(s)" in second.getvalue()
    assert run_verify()[0] == 0


# --- Attack 1: shadowing the direct-change table -------------------------------------------------------


def test_temp_table_shadowing_does_not_capture_the_triggers_rows(app_role: str, physician: User) -> None:
    patient = PatientFactory()
    assignment = assign(physician, patient)
    before = DirectChange.objects.count()
    with raw_connection(app_role) as attacker:
        attacker.execute("CREATE TEMP TABLE audit_directchange AS SELECT * FROM public.audit_directchange WITH NO DATA")
        attacker.execute("SET search_path = pg_temp, public")
        attacker.execute("UPDATE records_patient SET is_confidential = true WHERE id = %s", [patient.pk])
        attacker.execute("DELETE FROM records_careassignment WHERE id = %s", [assignment.pk])
        captured = attacker.execute("SELECT count(*) FROM pg_temp.audit_directchange").fetchone()[0]
    assert captured == 0
    rows = DirectChange.objects.filter(pk__gt=0).order_by("id")[before:]
    assert {(r.table_name, r.operation, r.row_id) for r in rows} == {
        ("records_patient", "UPDATE", patient.pk),
        ("records_careassignment", "DELETE", assignment.pk),
    }
    assert {r.db_user for r in rows} == {app_role}
    assert not CareAssignment.objects.filter(pk=assignment.pk).exists()


def test_a_multi_row_insert_by_the_application_role_records_one_direct_change_per_row(
    app_role: str, physician: User
) -> None:
    patient = PatientFactory()
    before = DirectChange.objects.count()
    insert = (
        "INSERT INTO records_careassignment (staff_id, patient_id, team_role, starts_at, created_at) "
        "SELECT %s, %s, 'attending', now(), now() FROM generate_series(1, %s) RETURNING id"
    )
    with raw_connection(app_role) as attacker:
        # A table of the caller's named like the trigger's transition table cannot stand in for it.
        attacker.execute("CREATE TEMP TABLE inserted_rows (id bigint)")
        attacker.execute("INSERT INTO inserted_rows VALUES (-1)")
        attacker.execute("SET search_path = pg_temp, public")
        with attacker.transaction():
            assert attacker.execute(insert, [physician.pk, patient.pk, 0]).fetchall() == []  # no rows, no record
            txid = attacker.execute("SELECT txid_current()").fetchone()[0]
            inserted = sorted(row for (row,) in attacker.execute(insert, [physician.pk, patient.pk, 3]).fetchall())
            # COPY, as healthcrypt/bulk.py writes an import's rows (keys drawn first): the same trigger.
            keys = [
                key
                for (key,) in attacker.execute(
                    "SELECT nextval(pg_get_serial_sequence('records_careassignment', 'id')) FROM generate_series(1, 2)"
                )
            ]
            copy_sql = (
                "COPY records_careassignment (id, staff_id, patient_id, team_role, starts_at, created_at) FROM STDIN"
            )
            with attacker.cursor().copy(copy_sql) as copy:
                for key in sorted(keys):
                    copy.write_row((key, physician.pk, patient.pk, "nurse", timezone.now(), timezone.now()))
            inserted += sorted(keys)
    rows = list(DirectChange.objects.filter(pk__gt=0).order_by("id")[before:])
    assert [(r.table_name, r.operation, r.row_id) for r in rows] == [
        ("records_careassignment", "INSERT", row_id) for row_id in inserted
    ]
    assert len(rows) == 5
    assert {(r.db_user, r.txid, r.actor_marker, r.command) for r in rows} == {(app_role, txid, "", "")}
    assert all(r.backend_pid for r in rows)
    seal_direct_changes()
    assert not any(seal_of(r).verified for r in rows)


# --- Attack 2: forging or replaying the application's marker ----------------------------------------


def test_forged_and_replayed_markers_are_sealed_as_unverified(app_role: str, physician: User) -> None:
    patient = PatientFactory()
    assign(physician, patient)
    note = note_write(actor=physician, patient_id=patient.pk, kind="progress", text="Fine.")
    genuine = DirectChange.objects.get(table_name="records_clinicalnote", row_id=note.pk)
    with raw_connection(app_role) as attacker:
        with attacker.transaction():
            attacker.execute("SELECT set_config('healthcrypt.actor', %s, true)", [f"user:{physician.pk}"])
            attacker.execute("UPDATE records_patient SET is_confidential = true WHERE id = %s", [patient.pk])
        with attacker.transaction():
            # A valid marker, read from the trail (the application role may SELECT it), in another transaction.
            attacker.execute("SELECT set_config('healthcrypt.actor', %s, true)", [genuine.actor_marker])
            attacker.execute("UPDATE records_patient SET is_confidential = false WHERE id = %s", [patient.pk])
    seal_direct_changes()
    forged, replayed = DirectChange.objects.filter(db_user=app_role).order_by("id")
    assert forged.actor_marker == f"user:{physician.pk}"
    assert replayed.actor_marker == genuine.actor_marker
    assert replayed.txid != genuine.txid
    for change in (forged, replayed):
        seal = seal_of(change)
        assert not seal.verified
        assert seal.actor == ""
        assert seal.db_user == app_role
    assert seal_of(genuine).verified


# --- Attack 3: switching the guards off, erasing the evidence ---------------------------------------


def test_maintenance_switch_is_refused_to_a_role_that_is_not_a_member(app_role: str) -> None:
    auth_event_record(event="login", actor=None, target=None, username="someone", ip=None, user_agent="", detail={})
    with connection.cursor() as cursor:
        guards.ensure_maintenance_role(cursor)  # the role exists; the attacker is not in it
        cursor.execute(
            psycopg.sql.SQL("GRANT DELETE, UPDATE ON audit_autheventrecord TO {}")
            .format(psycopg.sql.Identifier(app_role))
            .as_string(cursor.connection)
        )
    with raw_connection(app_role) as attacker:
        attacker.execute("SELECT set_config('healthcrypt.audit_maintenance', 'on', false)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            attacker.execute("DELETE FROM audit_autheventrecord")
    assert AuthEventRecord.objects.exists()


def test_truncate_of_a_clinical_table_is_recorded() -> None:
    with raw_connection() as owner:
        owner.execute("TRUNCATE records_immunization")
    change = DirectChange.objects.get(table_name="records_immunization", operation="TRUNCATE")
    assert change.row_id is None
    assert change.db_user == connection.settings_dict["USER"]
    seal_direct_changes()
    assert not seal_of(change).verified


def test_replica_mode_does_not_silence_the_guards() -> None:
    patient = PatientFactory()
    auth_event_record(event="login", actor=None, target=None, username="someone", ip=None, user_agent="", detail={})
    with raw_connection() as superuser:
        superuser.execute("SET session_replication_role = replica")
        superuser.execute("UPDATE records_patient SET is_confidential = true WHERE id = %s", [patient.pk])
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            superuser.execute("DELETE FROM audit_autheventrecord")
    assert DirectChange.objects.filter(table_name="records_patient", operation="UPDATE", row_id=patient.pk).exists()


def test_disabled_trigger_fails_verify_audit_and_the_system_check(restore_guards: None) -> None:
    assert run_verify()[0] == 0
    assert check_database_guards(databases=["default"]) == []
    as_owner("ALTER TABLE records_patient DISABLE TRIGGER USER")
    code, output = run_verify()
    assert code == 1
    assert "GUARD: guard trigger records_patient_row_change on records_patient is disabled" in output
    assert "records_patient_truncate_change" in output
    errors = check_database_guards(databases=["default"])
    assert any("records_patient_row_change" in error.msg and error.is_serious() for error in errors)


def test_trigger_disabled_and_enabled_again_is_recorded_as_ddl(restore_guards: None) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if not cursor.fetchone()[0]:
            pytest.skip("event triggers need a superuser; the tests do not run as one here")
    with raw_connection() as owner:
        owner.execute("ALTER TABLE records_allergy DISABLE TRIGGER records_allergy_row_change")
        owner.execute("ALTER TABLE records_allergy ENABLE ALWAYS TRIGGER records_allergy_row_change")
    ddl = DirectChange.objects.filter(operation="DDL", table_name="public.records_allergy")
    assert ddl.count() == 2
    assert {change.command for change in ddl} == {"ALTER TABLE"}
    assert {change.db_user for change in ddl} == {connection.settings_dict["USER"]}


def _needs_superuser() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if not cursor.fetchone()[0]:
            pytest.skip("event triggers need a superuser; the tests do not run as one here")


class _SchemaEditor:
    """What a migration's RunPython hands its function, as far as marked_migration needs it."""

    connection = connection


def test_a_marked_migration_alters_a_clinical_table_and_seals_as_the_application(restore_guards: None) -> None:
    _needs_superuser()
    mark = marked_migration("records.9999_test")
    with transaction.atomic():  # one transaction, as a migration on PostgreSQL
        mark.code(None, _SchemaEditor())
        as_owner("ALTER TABLE records_allergy ALTER COLUMN source_id SET DEFAULT ''")
        as_owner("ALTER TABLE records_allergy ALTER COLUMN source_id DROP DEFAULT")
    ddl = list(DirectChange.objects.filter(operation="DDL", table_name="public.records_allergy"))
    assert len(ddl) == 2
    seal_direct_changes()
    seals = DirectChangeSeal.objects.filter(direct_change_id__in=[change.pk for change in ddl])
    assert {(seal.verified, seal.actor) for seal in seals} == {(True, "system:migrate:records.9999_test")}
    assert not Alert.objects.filter(rule="direct_change").exists()


def test_ddl_with_a_marker_copied_from_another_transaction_is_not_the_application(restore_guards: None) -> None:
    _needs_superuser()
    with transaction.atomic():
        marked_migration("records.9999_test").code(None, _SchemaEditor())
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_catalog.current_setting('healthcrypt.actor')")
            (stolen,) = cursor.fetchone()
    # The vendor's psql session, replaying the migration's marker in a transaction of its own.
    with raw_connection() as owner, owner.transaction():
        owner.execute("SELECT pg_catalog.set_config('healthcrypt.actor', %s, true)", [stolen])
        owner.execute("ALTER TABLE records_allergy ALTER COLUMN source_id SET DEFAULT ''")
        owner.execute("ALTER TABLE records_allergy ALTER COLUMN source_id DROP DEFAULT")
    seal_direct_changes()
    seals = DirectChangeSeal.objects.filter(operation="DDL", table_name="public.records_allergy")
    assert seals.count() == 2
    assert not seals.filter(verified=True).exists()
    assert Alert.objects.filter(rule="direct_change").exists()


def test_replaced_function_and_replica_only_trigger_are_reported(restore_guards: None) -> None:
    as_owner(
        "CREATE OR REPLACE FUNCTION public.healthcrypt_record_row_change() RETURNS trigger LANGUAGE plpgsql "
        "SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$ BEGIN RETURN NULL; END; $fn$"
    )
    as_owner("ALTER TABLE records_order ENABLE TRIGGER records_order_row_change")
    problems = guards.guard_problems(connection)
    assert "guard function public.healthcrypt_record_row_change() was replaced: its body is not the installed one" in (
        problems
    )
    assert any("records_order_row_change on records_order is not ENABLE ALWAYS" in p for p in problems)


def test_a_guard_trigger_redefined_to_fire_less_is_reported(restore_guards: None) -> None:
    assert guards.guard_problems(connection) == []
    # Same names, same functions, same ENABLE ALWAYS: only when they fire differs.
    for statement in (
        "DROP TRIGGER records_order_row_change ON records_order",
        "CREATE TRIGGER records_order_row_change AFTER DELETE ON records_order FOR EACH ROW "
        "EXECUTE FUNCTION public.healthcrypt_record_row_change()",
        "DROP TRIGGER records_allergy_insert_change ON records_allergy",
        "CREATE TRIGGER records_allergy_insert_change AFTER INSERT ON records_allergy "
        "REFERENCING NEW TABLE AS inserted_rows FOR EACH STATEMENT WHEN (false) "
        "EXECUTE FUNCTION public.healthcrypt_record_rows_inserted()",
    ):
        as_owner(statement)
    for table, trigger in (
        ("records_order", "records_order_row_change"),
        ("records_allergy", "records_allergy_insert_change"),
    ):
        as_owner(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {trigger}")
    problems = guards.guard_problems(connection)
    assert len(problems) == 2
    assert "guard trigger records_order_row_change on records_order was redefined" in problems[0]
    assert "guard trigger records_allergy_insert_change on records_allergy was redefined" in problems[1]


def test_maintenance_role_outside_a_test_database_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    with connection.cursor() as cursor:
        guards.ensure_maintenance_role(cursor)
    assert guards.guard_problems(connection) == []
    monkeypatch.setattr(guards, "TEST_DATABASE_PREFIX", "production_")
    assert any(guards.MAINTENANCE_ROLE in problem for problem in guards.guard_problems(connection))


def test_deleting_or_editing_a_sealed_direct_change_fails_verify_audit() -> None:
    patient = PatientFactory()
    with raw_connection() as owner:
        owner.execute("UPDATE records_patient SET is_confidential = true WHERE id = %s", [patient.pk])
        owner.execute("UPDATE records_patient SET is_confidential = false WHERE id = %s", [patient.pk])
    first, second = DirectChange.objects.filter(table_name="records_patient", operation="UPDATE").order_by("id")
    assert run_verify()[0] == 0  # seals both
    with guards_bypassed():
        as_owner("DELETE FROM audit_directchange WHERE id = %s", [first.pk])
        as_owner("UPDATE audit_directchange SET db_user = 'app' WHERE id = %s", [second.pk])
    code, output = run_verify()
    assert code == 1
    assert f"DELETED: direct partition 0 seq {seal_of(first).seq}" in output
    assert f"direct change #{first.pk} was deleted after it was sealed" in output
    assert f"direct change #{second.pk} no longer matches its seal" in output


def test_deleting_a_seal_breaks_the_direct_chain() -> None:
    patient = PatientFactory()
    with raw_connection() as owner:
        for _ in range(3):
            owner.execute(
                "UPDATE records_patient SET is_confidential = NOT is_confidential WHERE id = %s", [patient.pk]
            )
    seal_direct_changes()
    middle = DirectChangeSeal.objects.order_by("seq")[1]
    with guards_bypassed():
        as_owner("DELETE FROM audit_directchangeseal WHERE id = %s", [middle.pk])
        as_owner("DELETE FROM audit_directchange WHERE id = %s", [middle.direct_change_id])
    problems, _ = verify_all()
    assert any(str(p).startswith(f"MISSING: direct partition 0 seq {middle.seq}") for p in problems)


# --- Attack 5: the application role's own rights ------------------------------------------------------


def test_application_role_cannot_forge_direct_changes_nor_rewrite_audit_rows(
    app_role: str, physician: User, client_for: Callable[[User], Client]
) -> None:
    client_for(physician).get(reverse("accounts:dashboard"))
    auth_event_record(event="login", actor=None, target=None, username="someone", ip=None, user_agent="", detail={})
    seal_events()
    with raw_connection(app_role) as attacker:
        attacker.execute("SELECT count(*) FROM audit_accessevent")
        # The sealer's column grant lets the role UPDATE chain columns, but the trigger allows it on unsealed rows only.
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            attacker.execute("UPDATE audit_autheventrecord SET hash = 'x', seq = seq + 100")
        attacker.execute("SELECT count(*) FROM audit_directchange")
        for statement in (
            "INSERT INTO audit_directchange (at, table_name, operation, actor_marker, db_user, client_addr, "
            "application_name, command) VALUES (now(), 'records_patient', 'UPDATE', '', 'x', '', '', '')",
            "UPDATE audit_directchange SET db_user = 'x'",
            "DELETE FROM audit_directchange",
            "TRUNCATE audit_directchange",
            "UPDATE audit_autheventrecord SET username = 'x'",
            "DELETE FROM audit_autheventrecord",
            "TRUNCATE audit_accessevent",
            "DELETE FROM audit_directchangeseal",
            "DELETE FROM audit_auditchainhead",
            "UPDATE audit_auditchainhead SET partition = partition + 1",
            "TRUNCATE records_patient",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
                attacker.execute(statement)
        # Moving a head is allowed (the chains need it), and caught.
        head = AuditChainHead.objects.filter(stream="auth").first()
        attacker.execute("UPDATE audit_auditchainhead SET last_hash = %s WHERE id = %s", ["f" * 64, head.pk])
    problems, _ = verify_all()
    assert any(
        str(p) == f"ALTERED: auth partition {head.partition} seq {head.last_seq}: "
        "the recorded head does not match the last event (rewritten)"
        for p in problems
    )


def test_application_role_cannot_run_ddl_on_guarded_tables(app_role: str) -> None:
    with raw_connection(app_role) as attacker:
        for statement in (
            "ALTER TABLE records_patient DISABLE TRIGGER USER",
            "DROP TRIGGER records_patient_row_change ON records_patient",
            "CREATE TABLE public.audit_shadow (id int)",
        ):
            with pytest.raises((psycopg.errors.InsufficientPrivilege, DatabaseError)):
                attacker.execute(statement)


@pytest.mark.django_db
def test_pgaudit_logs_direct_reads_where_it_is_installed() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('shared_preload_libraries')")
        (preloaded,) = cursor.fetchone()
        if "pgaudit" not in preloaded:
            pytest.skip(
                "pgaudit is not loaded on this server (docs/operations/database-roles.md says how to enable it)"
            )
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pgaudit")
        cursor.execute("SET pgaudit.log = 'read'")
        cursor.execute("SELECT count(*) FROM records_patient")
        cursor.execute("SHOW pgaudit.log")
        assert cursor.fetchone()[0] == "read"


def test_every_row_a_fhir_import_writes_seals_as_the_importer(front_desk: User) -> None:
    # One mark per service call (the patient's save is marked by the service's own check), one
    # service call for the records of a bundle: every row must still carry the importer's marker.
    from pathlib import Path

    from django.conf import settings

    from exchange.fhir import importer

    samples = Path(settings.BASE_DIR).parent / "shared" / "data" / "fhir" / "synthea-r4"
    if not samples.is_dir() or not Path(settings.FHIR_SCHEMA_PATH).is_file():
        pytest.skip("the shared FHIR samples and R4 schema (../shared/data) are absent")
    bundle = min(
        (p for p in samples.glob("*.json") if not p.name.startswith(importer.SHARED_PREFIXES)),
        key=lambda p: p.stat().st_size,
    )
    before = DirectChange.objects.count()
    summary = importer.import_paths([bundle], actor=front_desk, progress=False)
    assert not summary.failed
    changes = list(DirectChange.objects.order_by("id")[before:])
    assert {"records_patient", "records_encounter", "records_observation"} <= {c.table_name for c in changes}
    seal_direct_changes()
    seals = DirectChangeSeal.objects.filter(direct_change_id__in=[c.pk for c in changes])
    assert seals.count() == len(changes)
    assert {(seal.verified, seal.actor) for seal in seals} == {(True, f"user:{front_desk.pk}")}
