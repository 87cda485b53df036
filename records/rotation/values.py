"""Re-encrypting values: stale rows read as raw tokens in batches, compare-and-swap writes, retries."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

from django.db import OperationalError, transaction

from healthcrypt.crypto import ROW_BOUND_VERSION, DecryptionError, row_identity
from records.db import mark_actor
from records.rotation.plan import (
    DEFAULT_BATCH_SIZE,
    MAX_PASSES,
    WRITE_ATTEMPTS,
    EncryptedTable,
    Problem,
    RotationState,
    Totals,
    _RowUpdate,
)

logger = logging.getLogger(__name__)


class ValueRotation(RotationState):
    """The value pass of rotate_keys: every stale value of every encrypted table."""

    @property
    def _current_prefix(self) -> str:
        return f"{ROW_BOUND_VERSION}:{self.current}:"

    def _stale_condition(self, table: EncryptedTable) -> tuple[str, list[str]]:
        """SQL that is true for a row holding any value that is not row-bound under the current key."""
        qn = self.connection.ops.quote_name
        prefix = self._current_prefix
        # The length is an int we computed, inlined so that no backend has to guess its SQL type.
        parts = [
            f"({qn(c.column)} IS NOT NULL AND SUBSTR({qn(c.column)}, 1, {len(prefix)}) <> %s)" for c in table.columns
        ]
        return " OR ".join(parts), [prefix] * len(parts)

    def _count_stale_rows(self, table: EncryptedTable) -> int:
        qn = self.connection.ops.quote_name
        condition, params = self._stale_condition(table)
        with self.connection.cursor() as cursor:
            # Identifiers come from model metadata and are quoted; values are parameters.
            cursor.execute(f"SELECT COUNT(*) FROM {qn(table.table)} WHERE {condition}", params)  # noqa: S608
            return int(cursor.fetchone()[0])

    def _stale_batches(self, table: EncryptedTable) -> Iterator[list[tuple[Any, ...]]]:
        """Raw ``(pk, row_uid, token, token, ...)`` rows with a stale value, in pk order, a batch at a time."""
        qn = self.connection.ops.quote_name
        condition, params = self._stale_condition(table)
        pk = qn(table.pk_column)
        columns = ", ".join(qn(c.column) for c in table.columns)
        base = f"SELECT {pk}, {qn(table.row_column)}, {columns} FROM {qn(table.table)} WHERE ({condition})"  # noqa: S608
        last_pk: Any = None
        while True:
            # Keyset pagination: each batch starts after the last key seen, so the walk is linear
            # and rows that stay stale (undecryptable, or changed under us) are not read twice.
            sql, args = (base, params) if last_pk is None else (f"{base} AND {pk} > %s", [*params, last_pk])
            with self.connection.cursor() as cursor:
                cursor.execute(f"{sql} ORDER BY {pk} LIMIT {self.batch_size}", args)
                rows = cursor.fetchall()
            if not rows:
                return
            yield rows
            last_pk = rows[-1][0]

    def _reencrypt_rows(
        self, table: EncryptedTable, rows: Sequence[tuple[Any, ...]], totals: Totals, *, report: bool
    ) -> list[_RowUpdate]:
        """Decrypt and re-encrypt the stale values of a batch (nothing is written here)."""
        updates = []
        current = self._current_prefix
        for pk, raw_row_uid, *tokens in rows:
            changes = []
            try:
                row = row_identity(raw_row_uid) if raw_row_uid is not None else None
            except DecryptionError:
                row = None
            for column, token in zip(table.columns, tokens, strict=True):
                if token is None or token.startswith(current):
                    continue
                if row is None:
                    if report:
                        totals.problem(Problem(table.label, pk, column.name, "the row has no valid row_uid"))
                    continue
                try:
                    # hc1 values are read with their old column-only binding: moving them is our job.
                    plaintext = self.keyring.decrypt(token, context=column.context, row=row, accept_column_bound=True)
                except DecryptionError as exc:
                    # The message names the key id and the column only (healthcrypt/crypto.py).
                    if report:
                        totals.problem(Problem(table.label, pk, column.name, str(exc)))
                    continue
                new = "" if self.dry_run else self.keyring.encrypt(plaintext, context=column.context, row=row)
                changes.append((column.column, token, new))
            if changes:
                updates.append(_RowUpdate(pk=pk, row_uid=raw_row_uid, changes=tuple(changes)))
        return updates

    def _write_batch(self, table: EncryptedTable, updates: Sequence[_RowUpdate]) -> tuple[int, int]:
        """Write one batch in one transaction; return (values written, values changed under us).

        Each row is a compare-and-swap (``WHERE pk = %s AND row_uid = %s AND column = <token read>``), sent with
        ``executemany`` so a batch costs a few round trips rather than one per row. Drivers do not
        report per-row counts from ``executemany``, so the batch is read back: every new token is
        random and unique, so finding it in place proves that write landed.
        """
        qn = self.connection.ops.quote_name
        name, pk, row_uid = qn(table.table), qn(table.pk_column), qn(table.row_column)
        written = conflicts = 0
        by_columns: dict[tuple[str, ...], list[_RowUpdate]] = {}
        for update in updates:
            by_columns.setdefault(tuple(column for column, _, _ in update.changes), []).append(update)
        with transaction.atomic(using=self.alias), self.connection.cursor() as cursor:
            # The database's change triggers must see this is the application, not a direct edit.
            mark_actor(None, job="rotate_keys")
            for columns, group in by_columns.items():
                sets = ", ".join(f"{qn(column)} = %s" for column in columns)
                checks = " AND ".join(f"{qn(column)} = %s" for column in columns)
                cursor.executemany(
                    f"UPDATE {name} SET {sets} WHERE {pk} = %s AND {row_uid} = %s AND {checks}",  # noqa: S608
                    [
                        [
                            *(new for _, _, new in update.changes),
                            update.pk,
                            update.row_uid,
                            *(old for _, old, _ in update.changes),
                        ]
                        for update in group
                    ],
                )
            current = self._read_back(cursor, table, [update.pk for update in updates])
            for update in updates:
                row = current.get(update.pk, {})
                for column, old, new in update.changes:
                    if row.get(column) == new:
                        written += 1
                        continue
                    if row.get(column) == old:
                        # Another value of the row changed under us, so the row-wide swap missed;
                        # this one did not change and is still ours to re-encrypt.
                        cursor.execute(
                            f"UPDATE {name} SET {qn(column)} = %s "  # noqa: S608
                            f"WHERE {pk} = %s AND {row_uid} = %s AND {qn(column)} = %s",
                            [new, update.pk, update.row_uid, old],
                        )
                        if cursor.rowcount == 1:
                            written += 1
                            continue
                    # The application wrote this value (or deleted the row) meanwhile: its write stands.
                    conflicts += 1
        return written, conflicts

    def _read_back(self, cursor: Any, table: EncryptedTable, pks: Sequence[Any]) -> dict[Any, dict[str, Any]]:
        """Current raw tokens of the given rows, as ``{pk: {column: token}}``."""
        qn = self.connection.ops.quote_name
        names = [c.column for c in table.columns]
        select = f"SELECT {qn(table.pk_column)}, {', '.join(qn(c) for c in names)} FROM {qn(table.table)}"  # noqa: S608
        found: dict[Any, dict[str, Any]] = {}
        # At most DEFAULT_BATCH_SIZE parameters per query, whatever --batch-size is (SQLite limits them).
        for start in range(0, len(pks), DEFAULT_BATCH_SIZE):
            chunk = pks[start : start + DEFAULT_BATCH_SIZE]
            placeholders = ", ".join(["%s"] * len(chunk))
            cursor.execute(f"{select} WHERE {qn(table.pk_column)} IN ({placeholders})", list(chunk))
            for row_pk, *tokens in cursor.fetchall():
                found[row_pk] = dict(zip(names, tokens, strict=True))
        return found

    def _write_with_retries(self, table: EncryptedTable, updates: Sequence[_RowUpdate]) -> tuple[int, int]:
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                return self._write_batch(table, updates)
            except OperationalError:
                # A deadlock or lock time-out against application traffic rolled the batch back;
                # inside an outer transaction there is nothing safe to retry.
                if attempt == WRITE_ATTEMPTS or self.connection.in_atomic_block:
                    raise
                logger.warning("rotate_keys: batch of %s hit a lock conflict; retrying.", table.label)
                time.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")

    def _rotate_table(self, table: EncryptedTable, totals: Totals) -> None:
        for pass_number in range(MAX_PASSES):
            first = pass_number == 0
            pass_conflicts = 0
            for rows in self._stale_batches(table):
                # Undecryptable values are reported once, on the first pass.
                updates = self._reencrypt_rows(table, rows, totals, report=first)
                values = sum(len(u.changes) for u in updates)
                if self.dry_run:
                    written, conflicts = values, 0
                elif updates:
                    written, conflicts = self._write_with_retries(table, updates)
                else:
                    written, conflicts = 0, 0
                totals.rows += len(updates)
                totals.values += written
                pass_conflicts += conflicts
                self.progress.advance(table.label, rows=len(rows) if first else 0, values=written)
            totals.conflicts += pass_conflicts
            if not pass_conflicts:
                return
