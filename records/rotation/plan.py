"""What a key rotation walks and how it counts: the encrypted tables and columns, the key id of a
stored value, problems and totals, the progress line, and the state the parts of a run share."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import OutputWrapper
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model

from healthcrypt.crypto import COLUMN_BOUND_VERSION, ROW_BOUND_VERSION, DecryptionError, Keyring, token_header
from healthcrypt.fields import ROW_UID, EncryptedField

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


def concrete_column(model: type[Model], name: str) -> str:
    """The database column of ``model``'s field ``name`` (the row identity, an encrypted value)."""
    found = model._meta.get_field(name)
    if not isinstance(found, Field) or not found.column:
        # A relation or a generic key has no column of its own to read raw tokens from.
        raise ImproperlyConfigured(f"{model._meta.label}.{name} is not a column.")
    return found.column


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
                row_column=concrete_column(model, ROW_UID),
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


class RotationState:
    """What the parts of one run share: the database, the keyring, and how the run was asked for.

    Command.handle sets these; the parts are mixed into the command (values, attachments, report).
    """

    alias: str
    connection: BaseDatabaseWrapper
    keyring: Keyring
    current: str
    dry_run: bool
    batch_size: int
    progress: Progress
    stdout: OutputWrapper
    stderr: OutputWrapper
