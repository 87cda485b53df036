"""Writing many new rows of one model at once: ``bulk_create``'s work, through COPY on PostgreSQL.

An import writes thousands of rows per run (exchange/fhir/importer.py): its records and their change
events. Django's bulk INSERT on PostgreSQL sends each column as an array parameter whose every value
psycopg quotes into the statement in Python (the connection binds parameters on the client side);
that quoting was about a tenth of an import's CPU. COPY sends the same values as rows of text that
psycopg's C code formats, and the server parses them as it would the INSERT's.

What stays the same as ``bulk_create``: each value is what Django would have sent (``pre_save`` with
``add=True``, then ``get_db_prep_save``: encrypted fields encrypt there, bound to the row), the rows
get their primary keys in order, and every trigger fires (COPY fires INSERT triggers, row and
statement level, with their transition tables). The keys are taken from the table's own sequence
first, so they are the ones an INSERT would have drawn. Anything this does not cover (SQLite, a key
already set, a value that is an expression, a column with a database default or generated) goes
through ``bulk_create`` unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from django.db import connections, models

_M = TypeVar("_M", bound=models.Model)

# Below this, COPY's extra round trip (the keys first) costs more than quoting a few values saves.
MIN_ROWS = 2


def _copied(model: type[models.Model], rows: Sequence[models.Model]) -> bool:
    """Will :func:`bulk_insert` write these rows with COPY (and so draw their keys first)?"""
    connection = connections[model._default_manager.db]
    return not (
        connection.vendor != "postgresql"
        or len(rows) < MIN_ROWS
        or not isinstance(model._meta.pk, models.AutoField)
        or model._meta.parents
        or any(type(row) is not model or row.pk is not None for row in rows)
        or any(
            field.db_default is not models.NOT_PROVIDED or field.generated
            for field in model._meta.concrete_fields
            if not field.primary_key
        )
    )


def draw_keys(
    batches: Sequence[tuple[type[models.Model], Sequence[models.Model]]],
) -> dict[type[models.Model], list[int]]:
    """The keys :func:`bulk_insert` will need for each batch of new rows it copies, drawn from every
    table's own sequence in one statement (instead of one per batch); pass each model's to
    ``bulk_insert(keys=...)``. Batches it would not copy get none. Keys drawn and not used (a batch
    refused before its insert) are a gap in the sequence, as for a rolled-back INSERT. One batch per model."""
    wanted = [(model, len(rows)) for model, rows in batches if rows and _copied(model, rows)]
    if not wanted:
        return {}
    if len({model for model, _ in wanted}) != len(wanted):
        raise ValueError("One batch per model")
    using = wanted[0][0]._default_manager.db
    connection = connections[using]
    if any(model._default_manager.db != using for model, _ in wanted):
        raise ValueError("Every batch on the same database")
    quote = connection.ops.quote_name
    tables = [quote(model._meta.db_table) for model, _ in wanted]
    columns = [model._meta.pk.column for model, _ in wanted]
    with connection.cursor() as cursor:
        # Each sequence looked up once per batch (not once per key), then a key per row from it.
        cursor.execute(
            "WITH g AS MATERIALIZED (SELECT k, pg_catalog.pg_get_serial_sequence(t, c)::pg_catalog.regclass AS s, n "
            "FROM unnest(%s::int[], %s::text[], %s::text[], %s::int[]) AS u(k, t, c, n)) "
            "SELECT g.k, pg_catalog.nextval(g.s) FROM g CROSS JOIN LATERAL pg_catalog.generate_series(1, g.n)",
            [list(range(len(wanted))), tables, columns, [count for _, count in wanted]],
        )
        drawn: list[list[int]] = [[] for _ in wanted]
        for index, key in cursor.fetchall():
            drawn[index].append(key)
    return {model: keys for (model, _), keys in zip(wanted, drawn, strict=True)}


def copy_rows(
    model: type[models.Model], rows: Sequence[Sequence[object]], *, keys: Sequence[int] | None = None
) -> list[int]:
    """COPY new rows of ``model`` into its table (PostgreSQL only) and return their keys, in row order.

    Each row holds the values of the model's concrete columns but the primary key, in ``_meta`` order,
    already prepared for the database (``get_db_prep_save``). ``keys``: drawn for these rows by
    :func:`draw_keys` (else drawn here, in a statement of their own). The caller has checked that the
    model can be copied (an ``AutoField`` key, no database default or generated column); the audit
    trail's change events of an import come here without model instances (audit/chain.py)."""
    using = model._default_manager.db
    connection = connections[using]
    pk = model._meta.pk
    quote = connection.ops.quote_name
    table = model._meta.db_table
    columns = ", ".join(
        quote(column)
        for column in (pk.column, *(field.column for field in model._meta.concrete_fields if not field.primary_key))
    )
    with connection.cursor() as cursor:
        if keys is None:
            # The keys an INSERT would have drawn, from the same sequence, in row order.
            cursor.execute(
                "SELECT pg_catalog.nextval(pg_catalog.pg_get_serial_sequence(%s, %s)) "
                "FROM pg_catalog.generate_series(1, %s)",
                [quote(table), pk.column, len(rows)],
            )
            keys = [key for (key,) in cursor.fetchall()]
        if len(keys) != len(rows) or any(type(key) is not int for key in keys):
            raise RuntimeError(f"The database did not give one key per row to insert into {table}")
        keys = sorted(keys)
        # Names from the model's own fields, quoted; the values travel as COPY data, never as SQL.
        # Django's error wrapping, as for its own statements: a refused row is an IntegrityError.
        with connection.wrap_database_errors, cursor.cursor.copy(f"COPY {quote(table)} ({columns}) FROM STDIN") as copy:
            for key, row_values in zip(keys, rows, strict=True):
                copy.write_row((key, *row_values))
    return keys


def bulk_insert(model: type[_M], rows: Sequence[_M], *, keys: Sequence[int] | None = None) -> list[_M]:
    """Insert new ``rows`` of ``model`` (all unsaved, of exactly this model) and return them with their keys.

    ``keys``: drawn for these rows by :func:`draw_keys` (else drawn here, in a statement of their own)."""
    if not rows:
        return []
    using = model._default_manager.db
    connection = connections[using]
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    if not _copied(model, rows):
        return _created(model, rows, keys)
    for row in rows:
        # What bulk_create checks first: a related object assigned but not saved is refused.
        row._prepare_related_fields_for_save(operation_name="bulk_create")  # type: ignore[attr-defined]
    # Every value prepared before COPY starts, so that a refusal (an unbound encrypted value, a
    # validation error of a field) happens before anything is sent.
    values = [[field.pre_save(row, True) for field in fields] for row in rows]
    if any(hasattr(value, "resolve_expression") for row_values in values for value in row_values):
        return _created(model, rows, keys)
    prepared = [
        [field.get_db_prep_save(value, connection) for field, value in zip(fields, row_values, strict=True)]
        for row_values in values
    ]
    keys = copy_rows(model, prepared, keys=keys)
    for row, key in zip(rows, keys, strict=True):
        row.pk = key
        row._state.adding = False
        row._state.db = using
    return list(rows)


def _created(model: type[_M], rows: Sequence[_M], keys: Sequence[int] | None) -> list[_M]:
    """``bulk_create``, with the keys drawn for these rows if any (a batch drawn for whole and then
    split, one part too small to copy: its rows keep the keys, and the order, they were drawn for)."""
    if keys is None or any(row.pk is not None for row in rows):
        return list(model._default_manager.bulk_create(rows))
    if len(keys) != len(rows):
        raise RuntimeError(f"Keys drawn for {len(keys)} rows, {len(rows)} to insert into {model._meta.db_table}")
    for row, key in zip(rows, sorted(keys), strict=True):
        row.pk = key
    try:
        return list(model._default_manager.bulk_create(rows))
    except BaseException:
        for row in rows:  # not written: without a key, as a refused bulk_create leaves them
            row.pk = None
        raise
