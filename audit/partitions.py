"""Monthly partitions of the audit event tables on PostgreSQL (issue 11: audit tables ready to grow).

``audit_accessevent``, ``audit_changeevent`` and ``audit_autheventrecord`` are ``PARTITIONED BY RANGE
(at)``: one partition per calendar month in UTC, named ``<table>_y2026m12``, plus a DEFAULT partition
``<table>_default``, so an event is never refused because its month's partition is missing. The
conversion is audit migration 0011; ``manage.py audit_partitions`` (monthly, as the owner) creates the
coming months and moves rows that landed in the DEFAULT partition into their month.

What changes for the database, not for Django's model state: the primary key is ``(id, at)``, the
chain's unique key ``(partition, seq, at)`` and the mac's ``(mac, at) WHERE mac <> ''`` (PostgreSQL
wants the partition key in every unique index). A copied row has the same ``at`` as its original, so
the mac index still refuses it; a second row claiming a chain place in another month is not refused
by the database, and ``verify_audit`` reports it ("a second event claims this place"). ``id`` takes
its values from a sequence owned by the column (PostgreSQL 15 has no identity columns on partitioned
tables), which Django's sequence reset finds through ``pg_get_serial_sequence``.

SQLite keeps plain tables: a single file has nothing to gain from partitions, and ``archive_audit
--month`` exports the same rows from them by date range.

Table and partition names here are constants of this module or built from them and a date: no input
reaches the SQL as text.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Any

# The event tables the requests write; the direct-change tables stay plain (few rows, one chain).
PARTITIONED_TABLES = ("audit_accessevent", "audit_changeevent", "audit_autheventrecord")
DEFAULT_SUFFIX = "_default"
MONTH_RE = re.compile(r"^_y(\d{4})m(\d{2})$")
AHEAD = 3  # months created in advance: a missed monthly run leaves a quarter of slack


def month_start(value: datetime.datetime | datetime.date) -> datetime.date:
    """The first day of the month of ``value`` (in UTC for an aware instant)."""
    if isinstance(value, datetime.datetime):
        value = value.astimezone(datetime.UTC).date()
    return value.replace(day=1)


def next_month(month: datetime.date) -> datetime.date:
    return datetime.date(month.year + month.month // 12, month.month % 12 + 1, 1)


def months(first: datetime.date, last: datetime.date) -> list[datetime.date]:
    """Every month from ``first``'s to ``last``'s, both included."""
    current, end, found = month_start(first), month_start(last), []
    while current <= end:
        found.append(current)
        current = next_month(current)
    return found


def partition_name(table: str, month: datetime.date) -> str:
    return f"{table}_y{month.year:04d}m{month.month:02d}"


def parse_month(text: str) -> datetime.date:
    """``2026-11`` -> 2026-11-01; ValueError otherwise."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", text)
    if not match:
        raise ValueError(text)
    return datetime.date(int(match[1]), int(match[2]), 1)


def bounds(month: datetime.date) -> tuple[datetime.datetime, datetime.datetime]:
    """The instants ``[from, to)`` of a month in UTC."""
    start = datetime.datetime.combine(month, datetime.time.min, tzinfo=datetime.UTC)
    return start, datetime.datetime.combine(next_month(month), datetime.time.min, tzinfo=datetime.UTC)


# --- PostgreSQL ----------------------------------------------------------------------------------


def is_partitioned(
    cursor: Any, table: str
) -> bool:  # pragma: no cover - PostgreSQL only: tests/audit/test_partitions.py
    cursor.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_partitioned_table p JOIN pg_catalog.pg_class c "
        "ON c.oid = p.partrelid WHERE c.relname = %s AND c.relnamespace = 'public'::regnamespace)",
        [table],
    )
    return bool(cursor.fetchone()[0])


@dataclass(frozen=True)
class Partition:
    name: str
    bound: str  # pg_get_expr(relpartbound), rendered in this session's time zone
    expected_bound: str  # what the name says it should be ('' for a name that is not ours)


def attached(
    cursor: Any, table: str
) -> list[Partition]:  # pragma: no cover - PostgreSQL only: tests/audit/test_partitions.py
    """The partitions attached to ``table``, with their actual and their expected bounds."""
    cursor.execute(
        "SELECT c.relname, pg_catalog.pg_get_expr(c.relpartbound, c.oid) FROM pg_catalog.pg_inherits i "
        "JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = pg_catalog.to_regclass(%s) ORDER BY c.relname",
        [f"public.{table}"],
    )
    rows = cursor.fetchall()
    found = []
    for name, bound in rows:
        found.append(Partition(name, bound, _expected_bound(cursor, table, name)))
    return found


def _expected_bound(
    cursor: Any, table: str, name: str
) -> str:  # pragma: no cover - PostgreSQL only: tests/audit/test_partitions.py
    suffix = name[len(table) :] if name.startswith(table) else ""
    if suffix == DEFAULT_SUFFIX:
        return "DEFAULT"
    match = MONTH_RE.match(suffix)
    if not match or not 1 <= int(match[2]) <= 12:
        return ""
    low, high = bounds(datetime.date(int(match[1]), int(match[2]), 1))
    # Rendered by the server as pg_get_expr renders bounds (session time zone), so the two compare.
    cursor.execute(
        "SELECT pg_catalog.format('FOR VALUES FROM (%%L) TO (%%L)', %s::timestamptz, %s::timestamptz)", [low, high]
    )
    return str(cursor.fetchone()[0])


def detached(
    cursor: Any, table: str
) -> list[str]:  # pragma: no cover - PostgreSQL only: tests/audit/test_partitions.py
    """Tables named like a partition of ``table`` that are not attached to it (detached, or never attached)."""
    cursor.execute(
        "SELECT c.relname FROM pg_catalog.pg_class c WHERE c.relnamespace = 'public'::regnamespace "
        "AND c.relkind = 'r' AND NOT c.relispartition AND (c.relname ~ %s OR c.relname = %s) ORDER BY c.relname",
        [f"^{table}_y[0-9]{{4}}m[0-9]{{2}}$", f"{table}{DEFAULT_SUFFIX}"],
    )
    return [row[0] for row in cursor.fetchall()]


def partition_problems(cursor: Any) -> list[str]:  # pragma: no cover - PostgreSQL only: tests/audit/test_partitions.py
    """Partitions attached or detached by hand: one sentence each (guard_problems reports them)."""
    problems = []
    for table in PARTITIONED_TABLES:
        if not is_partitioned(cursor, table):
            continue
        parts = attached(cursor, table)
        if not any(p.expected_bound == "DEFAULT" and p.bound == "DEFAULT" for p in parts):
            problems.append(f"{table} has no DEFAULT partition: an event of a month without one would be refused")
        for part in parts:
            if not part.expected_bound:
                problems.append(f"partition {part.name} of {table} was not made by audit_partitions (attached by hand)")
            elif part.bound != part.expected_bound:
                problems.append(f"partition {part.name} of {table} holds {part.bound}, not what its name says")
        for name in detached(cursor, table):
            problems.append(f"{name} is not attached to {table} (detached by hand): its events are out of the trail")
    return problems


def create_month(
    cursor: Any, table: str, month: datetime.date
) -> str:  # pragma: no cover - PostgreSQL only: tests/audit/test_partitions.py
    """Create ``table``'s partition for ``month`` (its indexes come from the parent). Returns its name."""
    name = partition_name(table, month)
    low, high = bounds(month)
    cursor.execute(
        f"CREATE TABLE public.{name} PARTITION OF public.{table} FOR VALUES FROM (%s) TO (%s)",
        [low, high],
    )
    return name


def create_default(
    cursor: Any, table: str
) -> str:  # pragma: no cover - PostgreSQL only: tests/audit/test_partitions.py
    name = f"{table}{DEFAULT_SUFFIX}"
    cursor.execute(f"CREATE TABLE public.{name} PARTITION OF public.{table} DEFAULT")
    return name


def existing_months(
    cursor: Any, table: str
) -> set[datetime.date]:  # pragma: no cover - PostgreSQL only: tests/audit/test_partitions.py
    found = set()
    for part in attached(cursor, table):
        match = MONTH_RE.match(part.name[len(table) :])
        if match and part.bound == part.expected_bound:
            found.add(datetime.date(int(match[1]), int(match[2]), 1))
    return found


def months_in(
    cursor: Any, relation: str
) -> list[datetime.date]:  # pragma: no cover - PostgreSQL only: tests/audit/test_partitions.py
    """The months (UTC) that rows of ``relation`` fall in."""
    cursor.execute(
        f"SELECT DISTINCT pg_catalog.date_trunc('month', at AT TIME ZONE 'UTC')::date FROM public.{relation}"  # noqa: S608
    )
    return sorted(row[0] for row in cursor.fetchall())


@dataclass
class Maintained:
    created: list[str]
    moved: int


def maintain(
    cursor: Any, table: str, *, today: datetime.date, ahead: int = AHEAD
) -> Maintained:  # pragma: no cover - PostgreSQL only: tests/audit/test_partitions.py
    """Create the partitions of this month and ``ahead`` more; move rows out of the DEFAULT partition.

    Rows in the DEFAULT partition are moved by detaching it, re-creating an empty one, creating their
    months' partitions, copying every row into the parent (each lands in its month) and dropping the
    detached table once the counts agree, all in the caller's transaction: a failure moves nothing.
    The DEFAULT partition is empty unless the monthly run was missed (or the clock jumped), so this
    normally creates a partition or none. Returns what was created and how many rows moved.
    """
    from audit import guards  # guards imports this module

    have = existing_months(cursor, table)
    default = f"{table}{DEFAULT_SUFFIX}"
    cursor.execute(f"SELECT EXISTS (SELECT 1 FROM public.{default})")  # noqa: S608
    stranded = bool(cursor.fetchone()[0])
    wanted = set(months(today, _add_months(today, ahead)))
    created: list[str] = []
    moved = 0
    if stranded:
        cursor.execute(f"LOCK TABLE public.{table} IN ACCESS EXCLUSIVE MODE")
        wanted |= set(months_in(cursor, default))
        holding = f"{table}_moving"
        cursor.execute(f"ALTER TABLE public.{table} DETACH PARTITION public.{default}")
        cursor.execute(f"ALTER TABLE public.{default} RENAME TO {holding}")
        created.append(create_default(cursor, table))
        for month in sorted(wanted - have):
            created.append(create_month(cursor, table, month))
        guards.install_partition_guards(cursor, table, created)
        cursor.execute(f"INSERT INTO public.{table} SELECT * FROM public.{holding} ORDER BY id")  # noqa: S608
        moved = cursor.rowcount
        cursor.execute(f"SELECT count(*) FROM public.{holding}")  # noqa: S608
        if cursor.fetchone()[0] != moved:  # pragma: no cover - the holding table is locked by this transaction
            raise RuntimeError(f"{table}: the rows of the DEFAULT partition were not all moved")
        cursor.execute(f"DROP TABLE public.{holding}")
    else:
        for month in sorted(wanted - have):
            created.append(create_month(cursor, table, month))
        guards.install_partition_guards(cursor, table, created)
    return Maintained(created, moved)


def _add_months(day: datetime.date, count: int) -> datetime.date:
    month = month_start(day)
    for _ in range(count):
        month = next_month(month)
    return month


# --- The conversion (audit migration 0011) --------------------------------------------------------


def _index_definitions(
    cursor: Any, table: str
) -> list[tuple[str, str, bool, bool]]:  # pragma: no cover - PostgreSQL only: tests/audit/test_partitions.py
    """(name, definition, is unique, backs a constraint) of every index of ``table``."""
    cursor.execute(
        "SELECT ic.relname, pg_catalog.pg_get_indexdef(i.indexrelid), i.indisunique, "
        "EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conindid = i.indexrelid) "
        "FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid "
        "WHERE i.indrelid = pg_catalog.to_regclass(%s) ORDER BY ic.relname",
        [f"public.{table}"],
    )
    return [(str(n), str(d), bool(u), bool(c)) for n, d, u, c in cursor.fetchall()]


def _with_at(definition: str) -> str:  # pragma: no cover - PostgreSQL only: tests/audit/test_partitions.py
    """An index definition with ``at`` appended to its key columns (before any WHERE)."""
    head, _, where = definition.partition(" WHERE ")
    if not head.endswith(")"):  # pragma: no cover - pg_get_indexdef always ends its column list so
        raise ValueError(definition)
    head = head[:-1] + ", at)"
    return f"{head} WHERE {where}" if where else head


def _grants(
    cursor: Any, old: str
) -> list[tuple[str, str]]:  # pragma: no cover - PostgreSQL only: tests/audit/test_partitions.py
    """GRANT statements that give ``old``'s grantees (other than its owner) the same rights on the new table."""
    cursor.execute(
        "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END, "
        "a.privilege_type, NULL::text FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a "
        "WHERE c.oid = pg_catalog.to_regclass(%s) AND a.grantee <> c.relowner "
        "UNION ALL "
        "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END, "
        "a.privilege_type, pg_catalog.quote_ident(t.attname) FROM pg_catalog.pg_attribute t, "
        "pg_catalog.aclexplode(t.attacl) a WHERE t.attrelid = pg_catalog.to_regclass(%s) AND t.attacl IS NOT NULL",
        [f"public.{old}", f"public.{old}"],
    )
    return [(f"{privilege} ({column})" if column else privilege, grantee) for grantee, privilege, column in cursor]


def convert(
    cursor: Any, table: str, *, today: datetime.date, ahead: int = AHEAD
) -> int:  # pragma: no cover - PostgreSQL only: tests/audit/test_partitions.py
    """Turn the plain ``table`` into a table partitioned by month of ``at``, keeping every row. Returns the rows copied.

    The new parent has the same columns (``LIKE``, with defaults and checks), the same index names
    (unique ones with ``at`` added), an ``id`` sequence owned by the column and set past the highest
    id, and the old table's grants. Rows are copied in id order; the old table is dropped after the
    counts agree. The guards' triggers are installed by the caller (guards.reinstall).
    """
    if is_partitioned(cursor, table):
        return 0
    old = f"{table}_unpartitioned"
    indexes = _index_definitions(cursor, table)
    grants = _grants(cursor, table)
    cursor.execute(f"LOCK TABLE public.{table} IN ACCESS EXCLUSIVE MODE")
    cursor.execute(
        "SELECT conname, contype, pg_catalog.pg_get_constraintdef(oid) FROM pg_catalog.pg_constraint "
        "WHERE conrelid = pg_catalog.to_regclass(%s) AND contype IN ('p', 'u')",
        [f"public.{table}"],
    )
    keys = cursor.fetchall()
    cursor.execute(f"ALTER TABLE public.{table} RENAME TO {old}")
    # Free the names: the old table's constraints and indexes go with it anyway.
    for name, _, _ in keys:
        cursor.execute(f'ALTER TABLE public.{old} DROP CONSTRAINT "{name}"')
    for name, _, _, backs_constraint in indexes:
        if not backs_constraint:
            cursor.execute(f'DROP INDEX public."{name}"')
    cursor.execute(
        f"CREATE TABLE public.{table} (LIKE public.{old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
        "INCLUDING STORAGE INCLUDING COMMENTS) PARTITION BY RANGE (at)"
    )
    for name, kind, definition in keys:
        columns = definition[definition.index("(") + 1 : definition.rindex(")")]
        what = "PRIMARY KEY" if kind == "p" else "UNIQUE"
        cursor.execute(f'ALTER TABLE public.{table} ADD CONSTRAINT "{name}" {what} ({columns}, at)')
    for _name, definition, unique, backs_constraint in indexes:
        if backs_constraint:
            continue
        # The definition names the table, which is now the new parent.
        cursor.execute(_with_at(definition) if unique else definition)
    create_default(cursor, table)
    cursor.execute(f"SELECT min(at) FROM public.{old}")  # noqa: S608
    (first,) = cursor.fetchone()
    wanted = set(months(first or today, _add_months(today, ahead))) | set(months_in(cursor, old))
    for month in sorted(wanted):
        create_month(cursor, table, month)
    cursor.execute(f"INSERT INTO public.{table} SELECT * FROM public.{old} ORDER BY id")  # noqa: S608
    copied = int(cursor.rowcount)
    cursor.execute(f"SELECT count(*) FROM public.{old}")  # noqa: S608
    if cursor.fetchone()[0] != copied:  # pragma: no cover - the old table is locked by this transaction
        raise RuntimeError(f"{table}: not every row was copied")
    cursor.execute(f"DROP TABLE public.{old}")
    sequence = f"{table}_id_seq"
    cursor.execute(f"CREATE SEQUENCE public.{sequence} AS bigint OWNED BY public.{table}.id")
    cursor.execute(
        f"SELECT pg_catalog.setval('public.{sequence}', COALESCE((SELECT max(id) FROM public.{table}), 0) + 1, false)"  # noqa: S608
    )
    cursor.execute(f"ALTER TABLE public.{table} ALTER COLUMN id SET DEFAULT pg_catalog.nextval('public.{sequence}')")
    for privilege, grantee in grants:
        cursor.execute(f"GRANT {privilege} ON public.{table} TO {grantee}")
        if privilege == "INSERT":
            cursor.execute(f"GRANT USAGE, SELECT ON SEQUENCE public.{sequence} TO {grantee}")
    return copied
