"""Re-encrypt every encrypted value and attachment file that is not row-bound under the current field key.

    python manage.py rotate_keys [--batch-size 500] [--dry-run] [--report-only] [--no-progress]
                                 [--database default]

Run it after prepending a new key to ``FIELD_ENCRYPTION_KEYS`` and restarting every worker, and to
move column-bound ``hc1`` values (and version 1 files) to the row-bound format
(docs/operations/keys.md, docs/decisions/0007-row-bound-ciphertext.md). A value is stale when it is
not row-bound (``hc2``) or not under the current key. It covers every model of every installed app that has encrypted fields
(found through ``apps.get_models()``, so new models need no change here) and the attachment files.

How it stays safe while the application keeps serving:

- Values are read as raw tokens with SQL, never through the ORM, whose ``from_db_value`` would
  decrypt every value, including the ones already current. Only rows with at least one value that
  does not start with ``hc2:<current kid>:`` are selected (a prefix test in SQL), in primary-key order,
  one batch at a time, so memory is flat and a finished rotation costs one scan per table.
- A stale value is decrypted (an ``hc1`` one with its old column-only binding: this command always
  reads them, whatever FIELD_ENCRYPTION_ACCEPT_COLUMN_BOUND says) and encrypted again for the same
  column context (``app_label.Model.field``) and the row's ``row_uid``, as EncryptedField does: the
  plaintext never changes.
- Each batch is written in its own transaction with compare-and-swap updates
  (``UPDATE ... WHERE pk = %s AND row_uid = <read> AND column = <the token we read>``). A row the application changed in
  the meantime is left as the application wrote it, so no concurrent write is ever overwritten with
  stale data, and no lock is held while decrypting. When that happened, the table is walked once
  more to pick up anything a worker still on the old keyring wrote under an old key.
- It is resumable without a checkpoint: what is done is visible in the data itself (the key id in
  each token, ``Attachment.key_id``), so an interrupted run simply continues when run again, and a
  run after completion changes nothing.
- A file is copied under the current key into a new storage name and verified
  (records/files.py ``reencrypt_file``), the row is pointed at the copy (compare-and-swap on the old
  storage name), and the old file is deleted only once that is committed. A crash at any step
  leaves a readable file behind.

A value or file that cannot be decrypted is reported (model, primary key, field; never a value)
and skipped, and the command exits with status 1 at the end. The closing report gives, for each key
id, how many values and files still use it and how many of them are still column-bound, so an
operator knows when an old key can be retired and when FIELD_ENCRYPTION_ACCEPT_COLUMN_BOUND can go.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Count

from healthcrypt.crypto import (
    COLUMN_BOUND_VERSION,
    ROW_BOUND_VERSION,
    DecryptionError,
    Keyring,
    field_keyring,
    row_identity,
    token_header,
)
from healthcrypt.fields import ROW_UID, EncryptedField
from records.db import mark_actor
from records.files import FORMAT_VERSION, attachments_dir, delete_stored, file_header, file_key_id, reencrypt_file
from records.models import Attachment

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 500
# Problems are listed one per line up to this many; beyond it only the count is given.
MAX_LISTED_PROBLEMS = 100
# A table is walked again while rows changed under us; the application writes the current key, so
# the second walk normally finds nothing, and the bound keeps a busy table from holding us forever.
MAX_PASSES = 3
# Batches hit by a deadlock or a lock time-out are retried after a short pause.
WRITE_ATTEMPTS = 3
NOT_A_CIPHERTEXT = "(not a ciphertext)"
_KID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


@dataclass(frozen=True)
class EncryptedColumn:
    """One encrypted field: its name, its database column, and its ciphertext context."""

    name: str
    column: str
    context: str


@dataclass(frozen=True)
class EncryptedTable:
    """A model with encrypted fields, as the raw SQL of this command needs it."""

    label: str
    table: str
    pk_column: str
    # The row identity column every token of the row is bound to (healthcrypt.fields.RowIdentity).
    row_column: str
    columns: tuple[EncryptedColumn, ...]


def encrypted_tables() -> list[EncryptedTable]:
    """Every concrete model of every installed app that has encrypted fields, sorted by label."""
    tables = []
    for model in apps.get_models():
        if model._meta.proxy:
            continue  # shares its table with the concrete model, which is walked already
        # Local fields only: an inherited field lives in (and is walked with) the parent's table.
        fields = [f for f in model._meta.local_concrete_fields if isinstance(f, EncryptedField)]
        if not fields:
            continue
        columns = tuple(
            # The context EncryptedField binds each token to (healthcrypt/fields.py ``context``).
            EncryptedColumn(name=f.name, column=f.column, context=f.context)
            for f in fields
        )
        tables.append(
            EncryptedTable(
                label=model._meta.label,
                table=model._meta.db_table,
                pk_column=model._meta.pk.column,
                row_column=model._meta.get_field(ROW_UID).column,
                columns=columns,
            )
        )
    return sorted(tables, key=lambda t: t.label)


def _token_kind(token: str) -> tuple[str, bool]:
    """``(key id, column-bound?)`` of a stored value; the key id is NOT_A_CIPHERTEXT for anything else.

    Never any part of the value itself: whatever else is in the column is not echoed, as it could be
    plaintext written behind our back.
    """
    try:
        version, kid = token_header(token)
    except DecryptionError:
        return NOT_A_CIPHERTEXT, False
    if version not in (ROW_BOUND_VERSION, COLUMN_BOUND_VERSION) or not _KID_RE.match(kid):
        return NOT_A_CIPHERTEXT, False
    return kid, version == COLUMN_BOUND_VERSION


def _kid_of(token: str) -> str:
    """The key id of a stored value, or NOT_A_CIPHERTEXT; never any part of the value itself."""
    return _token_kind(token)[0]


def _file_error(storage_name: str, exc: Exception) -> str:
    # DecryptionError and ValueError messages name the file and key id only; an OSError could
    # carry a path, so only its kind is shown.
    if isinstance(exc, OSError):
        return f"stored file {storage_name} unreadable ({type(exc).__name__})"
    return str(exc)


@dataclass(frozen=True)
class Problem:
    """A value or file that could not be re-encrypted: where it is, and why, without any value."""

    label: str
    pk: Any
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.label} pk={self.pk} field={self.field}: {self.reason}"


@dataclass
class Totals:
    """What a run did (or, in a dry run, would do)."""

    rows: int = 0
    values: int = 0
    files: int = 0
    conflicts: int = 0
    problems: int = 0
    listed: list[Problem] = field(default_factory=list)

    def problem(self, problem: Problem) -> None:
        self.problems += 1
        if len(self.listed) < MAX_LISTED_PROBLEMS:
            self.listed.append(problem)


@dataclass(frozen=True)
class _RowUpdate:
    pk: Any
    # The row identity as read (raw, as the driver gave it): the new tokens are bound to it, so the
    # write must also find it unchanged.
    row_uid: Any
    # (column, token read, new token) for each stale value of the row.
    changes: tuple[tuple[str, str, str], ...]


class Progress:
    """One status line on stderr, rewritten after each batch; silent unless enabled."""

    def __init__(self, stream: OutputWrapper, *, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.total = 0
        self.done = 0
        self.values = 0
        self.started = time.monotonic()
        self._width = 0

    def advance(self, what: str, *, rows: int, values: int) -> None:
        self.done += rows
        self.values += values
        if not self.enabled:
            return
        elapsed = max(time.monotonic() - self.started, 1e-9)
        percent = 100 * self.done / self.total if self.total else 100.0
        line = (
            f"rotate_keys: {what:<28} {self.done:>9,}/{self.total:,} rows+files ({percent:5.1f}%)"
            f"  {self.values / elapsed:9,.0f} values/s"
        )
        self.stream.write("\r" + line.ljust(self._width), ending="")
        self._width = len(line)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._width:
            self.stream.write("")


class Command(BaseCommand):
    help = (
        "Re-encrypt every encrypted value and attachment file that is not under the current field key "
        "(the first of FIELD_ENCRYPTION_KEYS), then report how many each key id still protects."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=DEFAULT_BATCH_SIZE,
            help=f"Rows read and written per transaction (default {DEFAULT_BATCH_SIZE}).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count (and check that they decrypt) the values and files to re-encrypt; write nothing.",
        )
        parser.add_argument(
            "--report-only", action="store_true", help="Only print how many values and files each key id protects."
        )
        parser.add_argument("--no-progress", action="store_true", help="Do not show the progress line on stderr.")
        parser.add_argument(
            "--database", default=DEFAULT_DB_ALIAS, help="The database to rotate (default: %(default)s)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size: int = options["batch_size"]
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        self.alias: str = options["database"]
        self.connection: BaseDatabaseWrapper = connections[self.alias]
        self.keyring: Keyring = field_keyring()
        self.current = self.keyring.current_kid
        self.dry_run: bool = options["dry_run"]
        self.batch_size = batch_size
        tables = encrypted_tables()
        totals = Totals()

        if not options["report_only"]:
            show = not options["no_progress"] and self.stderr.isatty()
            self.progress = Progress(self.stderr, enabled=show)
            if show:
                self.progress.total = sum(self._count_stale_rows(t) for t in tables) + self._stale_files().count()
            try:
                for table in tables:
                    self._rotate_table(table, totals)
                self._rotate_files(totals)
            except KeyboardInterrupt:
                self.progress.close()
                raise CommandError(
                    f"Interrupted after re-encrypting {totals.values} values and {totals.files} files; all of "
                    "them are saved. Run the command again to continue.",
                    returncode=130,
                ) from None
            self.progress.close()
            self._print_summary(totals)

        self._print_report(tables, verbose=options["verbosity"] >= 2)

        if totals.problems:
            raise CommandError(
                f"{totals.problems} value(s) or file(s) could not be re-encrypted (listed above); "
                "they still use their old key."
            )

    # --- Values -------------------------------------------------------------------------------

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

    # --- Files --------------------------------------------------------------------------------

    def _stale_files(self) -> Any:
        # Stale: under another key, or in the format bound to the storage name only.
        return Attachment.objects.using(self.alias).exclude(key_id=self.current, file_format=FORMAT_VERSION)

    def _recorded_sha256(self, pk: Any) -> str | None:
        """The SHA-256 recorded on the row, or None if that value cannot be decrypted (reported apart)."""
        column = Attachment._meta.get_field("sha256")
        context = f"{Attachment._meta.label}.{column.name}"
        qn = self.connection.ops.quote_name
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {qn(column.column)}, {qn(Attachment._meta.get_field(ROW_UID).column)} "  # noqa: S608
                f"FROM {qn(Attachment._meta.db_table)} WHERE {qn(Attachment._meta.pk.column)} = %s",
                [pk],
            )
            row = cursor.fetchone()
        if row is None or row[0] is None or row[1] is None:
            return None
        try:
            plaintext = self.keyring.decrypt(
                row[0], context=context, row=row_identity(row[1]), accept_column_bound=True
            )
            return plaintext.decode("ascii")
        except (DecryptionError, UnicodeDecodeError):
            return None

    def _rotate_files(self, totals: Totals) -> None:
        last_pk: Any = None
        while True:
            # Plain columns only: listing files must not decrypt anything.
            batch = self._stale_files().order_by("pk")
            if last_pk is not None:
                batch = batch.filter(pk__gt=last_pk)
            rows = list(batch.values_list("pk", "storage_name", ROW_UID)[: self.batch_size])
            if not rows:
                return
            for pk, storage_name, row_uid in rows:
                last_pk = pk
                done = self._rotate_file(pk, storage_name, row_uid, totals)
                self.progress.advance("records.Attachment files", rows=1, values=0)
                totals.files += done

    def _rotate_file(self, pk: Any, storage_name: str, row_uid: Any, totals: Totals) -> int:
        label = Attachment._meta.label
        if self.dry_run:
            # Reading the header alone tells whether the file is there and its key is in the ring.
            try:
                kid, _version = file_header(storage_name)
            except (DecryptionError, OSError, ValueError) as exc:
                totals.problem(Problem(label, pk, "file", _file_error(storage_name, exc)))
                return 0
            if kid not in self.keyring.kids:
                totals.problem(Problem(label, pk, "file", f"stored file {storage_name} is under unknown key '{kid}'"))
                return 0
            return 1
        try:
            # Written for the row's row_uid: a version 1 file becomes bound to its row here.
            new = reencrypt_file(storage_name, row_uid=row_uid, expected_sha256=self._recorded_sha256(pk))
        except (DecryptionError, OSError, ValueError) as exc:
            totals.problem(Problem(label, pk, "file", _file_error(storage_name, exc)))
            return 0
        try:
            with transaction.atomic(using=self.alias):
                mark_actor(None, job="rotate_keys")
                moved = (
                    Attachment.objects.using(self.alias)
                    .filter(pk=pk, storage_name=storage_name, row_uid=row_uid)
                    .update(storage_name=new.storage_name, key_id=new.key_id, file_format=FORMAT_VERSION)
                )
        except BaseException:
            delete_stored(new.storage_name)
            raise
        if not moved:
            # Deleted or replaced meanwhile: the copy is not needed, and the old file is not ours.
            delete_stored(new.storage_name)
            totals.conflicts += 1
            return 0
        # Only once the row points at the copy for good: before that, the old file is the data.
        transaction.on_commit(lambda: self._delete_old_file(pk, storage_name, totals), using=self.alias)
        return 1

    def _delete_old_file(self, pk: Any, storage_name: str, totals: Totals) -> None:
        try:
            delete_stored(storage_name)
        except OSError as exc:
            # The row already points at the new file; the old one is only clutter under an old key.
            totals.problem(
                Problem(Attachment._meta.label, pk, "file", f"old file {storage_name} not deleted ({exc.strerror})")
            )

    def _unreferenced_files(self) -> Counter[str]:
        """Files in the attachments directory that no row refers to, by key id (a batch at a time).

        They are left by an upload or a rotation that was killed between writing a file and
        committing its row (or between committing and deleting the old file); a fresh upload is one
        for a moment too. None is deleted here: see docs/operations/keys.md.
        """
        found: Counter[str] = Counter()
        directory = attachments_dir()
        if not directory.is_dir():
            return found

        def check(names: list[str]) -> None:
            known = set(
                Attachment.objects.using(self.alias)
                .filter(storage_name__in=names)
                .values_list("storage_name", flat=True)
            )
            for name in names:
                if name not in known:
                    try:
                        found[file_key_id(name)] += 1
                    except (DecryptionError, OSError, ValueError):
                        found[NOT_A_CIPHERTEXT] += 1

        names: list[str] = []
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_file():
                    names.append(entry.name)
                if len(names) >= self.batch_size:
                    check(names)
                    names = []
        if names:
            check(names)
        return found

    # --- Report -------------------------------------------------------------------------------

    def _print_summary(self, totals: Totals) -> None:
        verb = "Would re-encrypt" if self.dry_run else "Re-encrypted"
        self.stdout.write(
            f"{verb} {totals.values} values in {totals.rows} rows and {totals.files} files "
            f"under key '{self.current}'." + (" Dry run: nothing was written." if self.dry_run else "")
        )
        if totals.conflicts:
            self.stdout.write(
                f"{totals.conflicts} value(s) or file(s) changed while this ran and were left as the application "
                "wrote them; the report below shows whether any still use an old key."
            )
        if totals.problems:
            self.stderr.write(f"{totals.problems} value(s) or file(s) could not be decrypted:")
            for problem in totals.listed:
                self.stderr.write(f"  {problem}")
            if totals.problems > len(totals.listed):
                self.stderr.write(f"  ... and {totals.problems - len(totals.listed)} more.")

    def _print_report(self, tables: Sequence[EncryptedTable], *, verbose: bool) -> None:
        per_model: dict[str, Counter[str]] = {}
        values: Counter[str] = Counter()
        column_bound: Counter[str] = Counter()
        for table in tables:
            usage, unbound = self._key_usage(table)
            per_model[table.label] = usage
            values.update(usage)
            column_bound.update(unbound)
        unbound_files = Attachment.objects.using(self.alias).exclude(file_format=FORMAT_VERSION).values("pk").count()
        files: Counter[str] = Counter(
            dict(
                Attachment.objects.using(self.alias)
                .values_list("key_id")
                .annotate(n=Count("pk"))
                .order_by()
                .values_list("key_id", "n")
            )
        )
        ring = self.keyring.kids
        kids = [*ring, *sorted((set(values) | set(files)) - set(ring))]
        width = max(len("key id"), *(len(k) for k in kids))
        self.stdout.write(f"Key usage (current key: '{self.current}'):")
        self.stdout.write(f"  {'key id':<{width}}  {'values':>10}  {'col-bound':>10}  {'files':>8}  status")
        for kid in kids:
            if kid == self.current:
                status = "current" + (": column-bound values left, run rotate_keys" if column_bound[kid] else "")
            elif kid not in ring:
                status = "NOT IN THE KEYRING: cannot be decrypted"
            elif values[kid] or files[kid]:
                status = "still in use: run rotate_keys"
            else:
                status = "unused: can be retired once no backup needs it"
            self.stdout.write(
                f"  {kid:<{width}}  {values[kid]:>10}  {column_bound[kid]:>10}  {files[kid]:>8}  {status}"
            )
        left = sum(column_bound.values())
        # The operator turns FIELD_ENCRYPTION_ACCEPT_COLUMN_BOUND off once both reach 0.
        self.stdout.write(
            f"Column-bound values left: {left}; files not bound to their row: {unbound_files}"
            + (
                "."
                if not (left or unbound_files)
                else " (readable only while FIELD_ENCRYPTION_ACCEPT_COLUMN_BOUND is on)."
            )
        )
        unreferenced = self._unreferenced_files()
        if unreferenced:
            counts = ", ".join(f"{kid}: {n}" for kid, n in sorted(unreferenced.items()))
            self.stdout.write(
                f"Files on disk that no attachment refers to: {sum(unreferenced.values())} ({counts}); "
                "left by interrupted uploads or rotations, see docs/operations/keys.md."
            )
        else:
            self.stdout.write("Files on disk that no attachment refers to: 0.")
        if verbose:
            self.stdout.write("Values per model and key id:")
            for label, usage in per_model.items():
                counts = ", ".join(f"{kid}: {n}" for kid, n in sorted(usage.items())) or "no values"
                self.stdout.write(f"  {label}: {counts}")

    def _key_usage(self, table: EncryptedTable) -> tuple[Counter[str], Counter[str]]:
        """How many values of the table each key id protects, and how many of those are column-bound.

        Counted in SQL from the token prefixes, without decrypting.
        """
        qn = self.connection.ops.quote_name
        # Per key id: the row-bound prefix, then the column-bound one.
        prefixes = [
            f"{version}:{kid}:" for kid in self.keyring.kids for version in (ROW_BOUND_VERSION, COLUMN_BOUND_VERSION)
        ]
        selects: list[str] = []
        params: list[str] = []
        for column in table.columns:
            col = qn(column.column)
            selects.append(f"COUNT({col})")
            for prefix in prefixes:
                selects.append(f"SUM(CASE WHEN SUBSTR({col}, 1, {len(prefix)}) = %s THEN 1 ELSE 0 END)")
                params.append(prefix)
        with self.connection.cursor() as cursor:
            cursor.execute(f"SELECT {', '.join(selects)} FROM {qn(table.table)}", params)  # noqa: S608
            row = [int(n or 0) for n in cursor.fetchone()]
        usage: Counter[str] = Counter()
        column_bound: Counter[str] = Counter()
        stride = 1 + len(prefixes)
        for index, column in enumerate(table.columns):
            present, *per_prefix = row[index * stride : (index + 1) * stride]
            for position, kid in enumerate(self.keyring.kids):
                bound, unbound = per_prefix[2 * position], per_prefix[2 * position + 1]
                if bound + unbound:
                    usage[kid] += bound + unbound
                if unbound:
                    column_bound[kid] += unbound
            if present > sum(per_prefix):
                # Values under keys no longer in the ring: rare, so read just those to name their key.
                foreign, foreign_unbound = self._foreign_kids(table, column, prefixes)
                usage.update(foreign)
                column_bound.update(foreign_unbound)
        return usage, column_bound

    def _foreign_kids(
        self, table: EncryptedTable, column: EncryptedColumn, prefixes: list[str]
    ) -> tuple[Counter[str], Counter[str]]:
        qn = self.connection.ops.quote_name
        col, pk = qn(column.column), qn(table.pk_column)
        outside = " AND ".join(f"SUBSTR({col}, 1, {len(p)}) <> %s" for p in prefixes)
        base = f"SELECT {pk}, {col} FROM {qn(table.table)} WHERE {col} IS NOT NULL AND {outside}"  # noqa: S608
        found: Counter[str] = Counter()
        unbound: Counter[str] = Counter()
        last_pk: Any = None
        while True:
            sql, args = (base, prefixes) if last_pk is None else (f"{base} AND {pk} > %s", [*prefixes, last_pk])
            with self.connection.cursor() as cursor:
                cursor.execute(f"{sql} ORDER BY {pk} LIMIT {self.batch_size}", args)
                rows = cursor.fetchall()
            if not rows:
                return found, unbound
            for _, token in rows:
                kid, column_bound = _token_kind(token)
                found[kid] += 1
                if column_bound:
                    unbound[kid] += 1
            last_pk = rows[-1][0]
