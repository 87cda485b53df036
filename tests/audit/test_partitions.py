"""Monthly partitions of the audit event tables (issue 11, audit/partitions.py, audit 0011).

PostgreSQL: events land in their month's partition, a month without one falls into the DEFAULT partition
until ``audit_partitions`` moves it out, chains verify across partitions, and every partition is guarded
as its table is (row triggers, its own TRUNCATE trigger, the sealer's one UPDATE). SQLite keeps plain
tables; the month arithmetic and the command's answer there are checked on both.
"""

# ruff: noqa: S608  (the SQL names partitions built from this module's constants and dates; no input)
from __future__ import annotations

import datetime
import json
from io import StringIO
from pathlib import Path

import psycopg
import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.test import override_settings
from django.utils import timezone

from audit import guards, partitions
from audit.chain import insert_unsealed
from audit.models import AuthEventRecord, DirectChange, DirectChangeSeal
from audit.sealer import seal_events
from audit.sealing import seal_direct_changes
from audit.services import auth_event_record
from audit.verify import verify_all
from tests.audit.test_integrity import guards_bypassed
from tests.audit.test_postgres_guards import app_role, as_owner, raw_connection, restore_guards  # noqa: F401

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="SQLite keeps plain tables: partitions exist on PostgreSQL only"
)
AUTH = "audit_autheventrecord"


def login(username: str = "someone") -> AuthEventRecord:
    auth_event_record(
        event="login", actor=None, target=None, username=username, ip="10.0.0.1", user_agent="", detail={}
    )
    return AuthEventRecord.objects.order_by("-id")[0]


def home_of(table: str, event_id: int) -> str:
    """The partition a row is stored in."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tableoid::regclass::text FROM {table} WHERE id = %s", [event_id])
        return str(cursor.fetchone()[0])


def this_month() -> datetime.date:
    return partitions.month_start(timezone.now())


def far_month() -> datetime.date:
    """A month years ahead, beyond any partition made in advance."""
    return datetime.date(this_month().year + 5, 6, 1)


def verify_problems() -> list[str]:
    problems, _ = verify_all()
    return [str(p) for p in problems]


# --- Both databases --------------------------------------------------------------------------------


def test_months_are_calendar_months_in_utc() -> None:
    late = datetime.datetime(2026, 12, 31, 23, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=-5)))
    assert partitions.month_start(late) == datetime.date(2027, 1, 1)  # 04:30 UTC on 1 January
    assert partitions.months(datetime.date(2026, 11, 15), datetime.date(2027, 2, 1)) == [
        datetime.date(2026, 11, 1),
        datetime.date(2026, 12, 1),
        datetime.date(2027, 1, 1),
        datetime.date(2027, 2, 1),
    ]
    assert partitions.partition_name("audit_accessevent", datetime.date(2026, 12, 1)) == "audit_accessevent_y2026m12"
    assert partitions.bounds(datetime.date(2026, 12, 1)) == (
        datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC),
        datetime.datetime(2027, 1, 1, tzinfo=datetime.UTC),
    )
    assert partitions.parse_month("2026-11") == datetime.date(2026, 11, 1)
    for bad in ("2026-13", "26-11", "2026-11-01"):
        with pytest.raises(ValueError):  # noqa: PT011
            partitions.parse_month(bad)


@pytest.mark.skipif(connection.vendor == "postgresql", reason="the SQLite answer")
@pytest.mark.django_db
def test_audit_partitions_has_nothing_to_do_on_sqlite() -> None:
    out = StringIO()
    call_command("audit_partitions", stdout=out)
    assert "nothing to do" in out.getvalue()


# --- PostgreSQL ------------------------------------------------------------------------------------


@postgres_only
@pytest.mark.django_db(transaction=True)
class TestPartitions:
    def test_an_event_lands_in_its_months_partition(self) -> None:
        event = login()
        assert home_of(AUTH, event.pk) == partitions.partition_name(AUTH, this_month())
        with connection.cursor() as cursor:
            for table in partitions.PARTITIONED_TABLES:
                assert partitions.is_partitioned(cursor, table)
                # Django's sequence reset (flush, reset_sequences) finds the id sequence.
                cursor.execute("SELECT pg_catalog.pg_get_serial_sequence(%s, 'id')", [table])
                assert cursor.fetchone()[0] == f"public.{table}_id_seq"

    def test_a_month_without_a_partition_goes_to_default_and_audit_partitions_moves_it_out(self) -> None:
        before = login("before")
        month = far_month()
        with override_settings(AUDIT_SEAL_ON_COMMIT=False):
            stranded = AuthEventRecord(
                event="login", username="far", ip="10.0.0.2", user_agent="", detail={}, at=partitions.bounds(month)[0]
            )
            insert_unsealed([stranded])
        assert home_of(AUTH, stranded.pk) == f"{AUTH}_default"
        out = StringIO()
        call_command("audit_partitions", "--ahead", "2", stdout=out)
        assert "moved 1 row(s)" in out.getvalue()
        assert home_of(AUTH, stranded.pk) == partitions.partition_name(AUTH, month)
        assert home_of(AUTH, before.pk) == partitions.partition_name(AUTH, this_month())
        assert AuthEventRecord.objects.get(pk=stranded.pk).hash == ""  # moved as it was: still unsealed
        seal_events()
        assert AuthEventRecord.objects.get(pk=stranded.pk).hash
        assert verify_problems() == []
        # Run again: nothing to create, nothing to move.
        again = StringIO()
        call_command("audit_partitions", "--ahead", "2", stdout=again)
        assert "created none; moved 0 row(s)" in again.getvalue()
        # The DDL it made is the application's (its transaction was marked), not a direct change.
        ddl = DirectChange.objects.filter(operation="DDL", table_name__startswith=f"public.{AUTH}")
        assert ddl.exists()
        seal_direct_changes()
        seals = DirectChangeSeal.objects.filter(direct_change_id__in=ddl.values("id"))
        assert {(s.verified, s.actor) for s in seals} == {(True, "system:audit_partitions")}

    def test_chains_verify_across_partitions_and_an_edit_in_one_is_found(self, time_machine: object) -> None:
        first = login("this month")
        time_machine.move_to(partitions.bounds(partitions.next_month(this_month()))[0])  # type: ignore[attr-defined]
        second = login("next month")
        assert home_of(AUTH, first.pk) != home_of(AUTH, second.pk)
        seal_events()
        assert verify_problems() == []
        with guards_bypassed():
            as_owner(f"UPDATE {home_of(AUTH, first.pk)} SET username = 'x' WHERE id = %s", [first.pk])
        assert any(p.startswith("ALTERED: auth") and f"event id {first.pk}" in p for p in verify_problems())

    def test_the_sealer_seals_rows_in_every_partition(self, time_machine: object) -> None:
        month = this_month()
        with override_settings(AUDIT_SEAL_ON_COMMIT=False):
            here = login("here")
            time_machine.move_to(partitions.bounds(partitions.next_month(month))[0])  # type: ignore[attr-defined]
            there = login("there")
        assert [home_of(AUTH, here.pk), home_of(AUTH, there.pk)] == [
            partitions.partition_name(AUTH, month),
            partitions.partition_name(AUTH, partitions.next_month(month)),
        ]
        assert seal_events().sealed["auth"] == 2
        assert [e.seq for e in AuthEventRecord.objects.order_by("seq")] == [1, 2]
        assert not AuthEventRecord.objects.filter(hash="").exists()

    def test_the_sealer_seals_a_row_waiting_in_the_default_partition(self) -> None:
        with override_settings(AUDIT_SEAL_ON_COMMIT=False):
            waiting = AuthEventRecord(
                event="login",
                username="far",
                ip=None,
                user_agent="",
                detail={},
                at=partitions.bounds(datetime.date(this_month().year + 7, 2, 1))[0],  # no partition made for it
            )
            insert_unsealed([waiting])
        assert home_of(AUTH, waiting.pk) == f"{AUTH}_default"
        assert seal_events().sealed["auth"] == 1
        assert AuthEventRecord.objects.get(pk=waiting.pk).hash
        assert verify_problems() == []

    def test_update_delete_and_truncate_of_a_partition_itself_are_refused(self) -> None:
        event = login()
        seal_events()
        partition = home_of(AUTH, event.pk)
        with raw_connection() as owner:
            for statement in (
                f"UPDATE {partition} SET username = 'x'",
                f"UPDATE {partition} SET hash = 'f', seq = seq + 100",
                f"DELETE FROM {partition}",
                f"TRUNCATE {partition}",
                f"TRUNCATE {AUTH}_default",
                f"TRUNCATE {AUTH}",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                    owner.execute(statement)
        assert AuthEventRecord.objects.filter(pk=event.pk).exists()

    def test_a_trigger_disabled_on_one_partition_is_reported(self, restore_guards: None) -> None:  # noqa: F811
        assert guards.guard_problems(connection) == []
        partition = partitions.partition_name(AUTH, this_month())
        as_owner(f"ALTER TABLE {partition} DISABLE TRIGGER {AUTH}_append_only")
        as_owner(f"ALTER TABLE {partition} DISABLE TRIGGER {AUTH}_no_truncate")
        problems = guards.guard_problems(connection)
        assert f"guard trigger {AUTH}_append_only on {partition} is disabled" in problems
        assert f"guard trigger {AUTH}_no_truncate on {partition} is disabled" in problems
        assert not any(f"on {AUTH} is" in p for p in problems)  # the parent's are fine

    def test_partitions_detached_or_attached_by_hand_are_reported(self) -> None:
        month = partitions.next_month(this_month())
        detached = partitions.partition_name(AUTH, month)
        low, high = partitions.bounds(datetime.date(2098, 3, 1))
        try:
            as_owner(f"ALTER TABLE {AUTH} DETACH PARTITION {detached}")
            as_owner(f"CREATE TABLE {AUTH}_extra PARTITION OF {AUTH} FOR VALUES FROM (%s) TO (%s)", [low, high])
            problems = guards.guard_problems(connection)
            assert f"{detached} is not attached to {AUTH} (detached by hand): its events are out of the trail" in (
                problems
            )
            assert f"partition {AUTH}_extra of {AUTH} was not made by audit_partitions (attached by hand)" in problems
            assert f"guard trigger {AUTH}_no_truncate on {AUTH}_extra is missing" in problems
        finally:
            as_owner(f"DROP TABLE IF EXISTS {AUTH}_extra")
            start, end = partitions.bounds(month)
            as_owner(f"ALTER TABLE {AUTH} ATTACH PARTITION {detached} FOR VALUES FROM (%s) TO (%s)", [start, end])
        assert guards.guard_problems(connection) == []

    def test_a_partition_with_other_bounds_than_its_name_is_reported(self) -> None:
        wrong = partitions.partition_name(AUTH, datetime.date(2099, 1, 1))
        low, high = partitions.bounds(datetime.date(2099, 2, 1))
        try:
            as_owner(f"CREATE TABLE {wrong} PARTITION OF {AUTH} FOR VALUES FROM (%s) TO (%s)", [low, high])
            assert any(
                p.startswith(f"partition {wrong} of {AUTH} holds FOR VALUES") for p in guards.guard_problems(connection)
            )
        finally:
            as_owner(f"DROP TABLE IF EXISTS {wrong}")

    def test_disabling_a_trigger_on_a_partition_is_recorded_as_ddl(self, restore_guards: None) -> None:  # noqa: F811
        with connection.cursor() as cursor:
            cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            if not cursor.fetchone()[0]:
                pytest.skip("event triggers need a superuser; the tests do not run as one here")
        partition = partitions.partition_name(AUTH, this_month())
        with raw_connection() as owner:
            owner.execute(f"ALTER TABLE {partition} DISABLE TRIGGER {AUTH}_append_only")
            owner.execute(f"ALTER TABLE {partition} ENABLE ALWAYS TRIGGER {AUTH}_append_only")
        ddl = DirectChange.objects.filter(operation="DDL", table_name=f"public.{partition}")
        assert ddl.count() == 2
        assert set(ddl.values_list("actor_marker", flat=True)) == {""}  # typed in psql: no marker

    def test_the_application_role_cannot_create_detach_or_empty_partitions(self, app_role: str) -> None:  # noqa: F811
        event = login()
        partition = home_of(AUTH, event.pk)
        low, high = partitions.bounds(far_month())
        with raw_connection(app_role) as attacker:
            for statement, params in (
                (f"CREATE TABLE public.{AUTH}_y2099m01 PARTITION OF {AUTH} FOR VALUES FROM (%s) TO (%s)", [low, high]),
                (f"ALTER TABLE {AUTH} DETACH PARTITION {partition}", []),
                (f"ALTER TABLE {AUTH} DETACH PARTITION {AUTH}_default", []),
                (f"ALTER TABLE {partition} DISABLE TRIGGER {AUTH}_append_only", []),
                (f"DROP TABLE {partition}", []),
                (f"TRUNCATE {partition}", []),
                (f"DELETE FROM {partition}", []),
                (f"UPDATE {partition} SET hash = ''", []),
                (f"SELECT count(*) FROM {partition}", []),
            ):
                # Refused by rights (audit_db_role revokes everything on a partition), before any trigger.
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"permission denied|must be owner"):
                    attacker.execute(statement, params)
            # Through the table, as the application writes and reads, it works.
            attacker.execute("SELECT count(*) FROM audit_autheventrecord")
        assert AuthEventRecord.objects.filter(pk=event.pk).exists()
        assert guards.guard_problems(connection) == []

    def test_archive_of_a_month_is_that_months_partition(self, tmp_path: Path, time_machine: object) -> None:
        month = this_month()
        login("archived")
        time_machine.move_to(partitions.bounds(partitions.next_month(month))[0])  # type: ignore[attr-defined]
        login("not yet")
        seal_events()
        out = tmp_path / "month.jsonl"
        call_command("archive_audit", "--month", f"{month:%Y-%m}", "--out", str(out), stdout=StringIO())
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        events, summary = lines[:-1], lines[-1]
        assert [e["username"] for e in events] == ["archived"]
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {partitions.partition_name(AUTH, month)}")
            assert summary["streams"]["auth"]["events"] == cursor.fetchone()[0] == 1
        assert summary["streams"]["auth"]["partition"] == partitions.partition_name(AUTH, month)
        assert AuthEventRecord.objects.count() == 2  # nothing deleted or detached


@postgres_only
@pytest.mark.django_db
def test_converting_a_table_keeps_every_row_its_ids_indexes_uniqueness_and_grants() -> None:
    # A scratch table shaped like an event table, converted as migration 0011 converts the real ones
    # (inside the test's transaction: PostgreSQL's DDL rolls back with it).
    table = "audit_scratchevent"
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {table} (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
            "at timestamptz NOT NULL, mac varchar(64) NOT NULL DEFAULT '', hash varchar(64) NOT NULL, "
            "partition smallint CHECK (partition >= 0), seq bigint, "
            f"CONSTRAINT {table}_chain UNIQUE (partition, seq))"
        )
        cursor.execute(f"CREATE UNIQUE INDEX {table}_mac ON {table} (mac) WHERE mac <> ''")
        cursor.execute(f"CREATE INDEX {table}_unsealed ON {table} (id) WHERE hash = ''")
        cursor.execute(f"CREATE INDEX {table}_at ON {table} (at)")
        cursor.execute("DROP ROLE IF EXISTS hc_scratch_reader")
        cursor.execute("CREATE ROLE hc_scratch_reader NOLOGIN")
        cursor.execute(f"GRANT SELECT, INSERT ON {table} TO hc_scratch_reader")
        cursor.execute(f"GRANT UPDATE (hash) ON {table} TO hc_scratch_reader")
        rows = [
            (datetime.datetime(2025, 3, 9, 12, tzinfo=datetime.UTC), "m1", "h1", 0, 1),
            (datetime.datetime(2026, 1, 31, 23, 59, tzinfo=datetime.UTC), "m2", "h2", 0, 2),
            (datetime.datetime(2026, 2, 1, tzinfo=datetime.UTC), "", "", None, None),
        ]
        for row in rows:
            cursor.execute(f"INSERT INTO {table} (at, mac, hash, partition, seq) VALUES (%s, %s, %s, %s, %s)", row)
        cursor.execute(f"SELECT id, at, mac, hash, partition, seq FROM {table} ORDER BY id")
        before = cursor.fetchall()

        assert partitions.convert(cursor, table, today=datetime.date(2026, 2, 10), ahead=2) == 3

        cursor.execute(f"SELECT id, at, mac, hash, partition, seq FROM {table} ORDER BY id")
        assert cursor.fetchall() == before
        assert partitions.is_partitioned(cursor, table)
        names = [p.name for p in partitions.attached(cursor, table)]
        # Every month from the oldest row to two ahead of "today", and the DEFAULT partition.
        assert names[0] == f"{table}_default"
        assert names[1] == f"{table}_y2025m03"
        assert names[-1] == f"{table}_y2026m04"
        assert len(names) == 1 + 14
        cursor.execute(f"SELECT tableoid::regclass::text FROM {table} ORDER BY id")
        assert [r[0] for r in cursor.fetchall()] == [f"{table}_y2025m03", f"{table}_y2026m01", f"{table}_y2026m02"]
        cursor.execute(
            "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %s::regclass",
            [table],
        )
        indexes = dict(cursor.fetchall())
        assert "(id, at)" in indexes[f"{table}_pkey"]
        assert "(partition, seq, at)" in indexes[f"{table}_chain"]
        assert "(mac, at) WHERE" in indexes[f"{table}_mac"]
        assert "(id) WHERE" in indexes[f"{table}_unsealed"]
        assert "(at)" in indexes[f"{table}_at"]
        # New ids continue after the highest, from a sequence Django's reset can find.
        cursor.execute(f"INSERT INTO {table} (at, hash) VALUES (%s, '') RETURNING id", [rows[2][0]])
        assert cursor.fetchone()[0] == before[-1][0] + 1
        # A copy of a row (same mac, same at) is still refused.
        with pytest.raises(IntegrityError), transaction.atomic():
            cursor.execute(f"INSERT INTO {table} (at, mac, hash) VALUES (%s, 'm2', 'x')", [rows[1][0]])
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
        assert cursor.fetchone()[0] == f"public.{table}_id_seq"
        cursor.execute(
            "SELECT has_table_privilege('hc_scratch_reader', %s, 'INSERT'), "
            "has_table_privilege('hc_scratch_reader', %s, 'DELETE'), "
            "has_column_privilege('hc_scratch_reader', %s, 'hash', 'UPDATE'), "
            "has_column_privilege('hc_scratch_reader', %s, 'mac', 'UPDATE'), "
            "has_sequence_privilege('hc_scratch_reader', %s, 'USAGE')",
            [table, table, table, table, f"{table}_id_seq"],
        )
        assert cursor.fetchone() == (True, False, True, False, True)
        cursor.execute(f"DROP TABLE {table}")
        cursor.execute("DROP ROLE hc_scratch_reader")
