"""The database's share of a piece of work: record the statements it sends to PostgreSQL, then send
them again, alone.

A benchmark that compares Python work with a baseline can ask what part of its time no Python change
could remove: the server executing the same statements, with the same values, firing the same
triggers. :func:`recording` notes every statement psycopg sends while it is open (``execute``, and
``COPY ... FROM STDIN`` with the rows written to it); :func:`replay` sends them again on a cursor, in
order, as they were (the values already encrypted, the keys already drawn), and times each one. Replay
them inside a transaction that is rolled back, as the recorded work was: the same keys are written
again.

What the replay leaves out is everything the client did between statements; what it keeps is each
statement's round trip and the client library's own formatting of the values (psycopg's C code for
COPY rows), which any writer has to pay.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg


@dataclass
class Statement:
    sql: Any
    params: Any
    rows: list[tuple[Any, ...]] | None = None  # the rows of a COPY FROM STDIN
    many: bool = False  # sent with executemany

    @property
    def text(self) -> str:
        return self.sql if isinstance(self.sql, str) else str(self.sql)


@dataclass
class Recording:
    statements: list[Statement] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.statements)

    @property
    def rows_copied(self) -> int:
        return sum(len(statement.rows) for statement in self.statements if statement.rows is not None)


@contextmanager
def recording() -> Iterator[Recording]:
    """Note every statement sent by any psycopg cursor of this process until the block ends."""
    notes = Recording()
    open_copies: dict[int, list[tuple[Any, ...]]] = {}
    execute, executemany, copy, write_row = (
        psycopg.Cursor.execute,
        psycopg.Cursor.executemany,
        psycopg.Cursor.copy,
        psycopg.Copy.write_row,
    )

    def noted_execute(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        notes.statements.append(Statement(query, _frozen(params)))
        return execute(self, query, params, **kwargs)

    def noted_executemany(self: Any, query: Any, params_seq: Any, **kwargs: Any) -> Any:
        params_seq = [_frozen(params) for params in params_seq]
        notes.statements.append(Statement(query, params_seq, many=True))
        return executemany(self, query, params_seq, **kwargs)

    @contextmanager
    def noted_copy(self: Any, statement: Any, params: Any = None, **kwargs: Any) -> Iterator[Any]:
        rows: list[tuple[Any, ...]] = []
        notes.statements.append(Statement(statement, _frozen(params), rows=rows))
        with copy(self, statement, params, **kwargs) as started:
            open_copies[id(started)] = rows
            try:
                yield started
            finally:
                open_copies.pop(id(started), None)

    def noted_write_row(self: Any, row: Sequence[Any]) -> None:
        rows = open_copies.get(id(self))
        if rows is not None:
            rows.append(tuple(row))
        write_row(self, row)

    psycopg.Cursor.execute = noted_execute  # type: ignore[assignment,method-assign]
    psycopg.Cursor.executemany = noted_executemany  # type: ignore[assignment,method-assign]
    psycopg.Cursor.copy = noted_copy  # type: ignore[assignment,method-assign]
    psycopg.Copy.write_row = noted_write_row  # type: ignore[method-assign]
    try:
        yield notes
    finally:
        psycopg.Cursor.execute = execute  # type: ignore[method-assign]
        psycopg.Cursor.executemany = executemany  # type: ignore[method-assign]
        psycopg.Cursor.copy = copy  # type: ignore[method-assign]
        psycopg.Copy.write_row = write_row  # type: ignore[method-assign]


def _frozen(params: Any) -> Any:
    """A copy of a statement's parameters, so that a caller reusing its list cannot change the note."""
    if isinstance(params, list):
        return list(params)
    if isinstance(params, dict):
        return dict(params)
    return params


_TARGET = re.compile(r'^\s*(?:COPY|INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+"?([A-Za-z0-9_]+)"?', re.IGNORECASE)


def by_table(statement: Statement) -> str:
    """A statement's kind for a breakdown: the table a COPY, INSERT, UPDATE or DELETE writes; else
    ``savepoints`` for transaction control, ``reads`` for the rest (SELECTs, settings)."""
    text = statement.text
    match = _TARGET.match(text)
    if match:
        return match.group(1)
    if re.match(r"^\s*(SAVEPOINT|RELEASE|ROLLBACK)", text, re.IGNORECASE):
        return "savepoints"
    return "reads"


def replay(notes: Recording, cursor: Any, *, kind: Callable[[Statement], str] = by_table) -> dict[str, float]:
    """Send the noted statements again on ``cursor`` (a psycopg cursor), in order; the seconds spent in
    each, summed by ``kind``."""
    spent: dict[str, float] = defaultdict(float)
    for statement in notes.statements:
        started = time.perf_counter()
        if statement.rows is not None:
            with cursor.copy(statement.sql, statement.params) as copy:
                for row in statement.rows:
                    copy.write_row(row)
        elif statement.many:
            cursor.executemany(statement.sql, statement.params)
        else:
            cursor.execute(statement.sql, statement.params)
        spent[kind(statement)] += time.perf_counter() - started
    return dict(spent)
