"""Streamed CSV exports of the audit trail: flat memory whatever the number of rows, safe in a spreadsheet.

The rows are read with ``QuerySet.iterator(chunk_size=...)`` (a server-side cursor on PostgreSQL,
chunked fetches on SQLite) and written out in blocks of about ``FLUSH_BYTES``, so neither the rows
nor the file are ever held in memory, and the web server is not asked to write one tiny chunk per row.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone

CHUNK_SIZE = 2000
FLUSH_BYTES = 64 * 1024
# Cells a spreadsheet would read as a formula (OWASP "CSV injection"); tab and carriage return too,
# because some spreadsheets strip them and then evaluate what follows.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str | int | float:
    """One CSV cell: numbers as they are, dates in ISO 8601, JSON compact, text neutralised.

    Text starting with a formula character gets a leading single quote, so ``=HYPERLINK(...)`` in a
    user agent or a username is shown, not run, when a compliance officer opens the file.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        # Numbers come from id and sequence columns, never from what a user typed.
        return value
    if isinstance(value, datetime.datetime | datetime.date):
        text = value.isoformat()
    elif isinstance(value, dict | list):
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    else:
        text = str(value)
    if text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


def csv_stream(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[bytes]:
    """Yield the UTF-8 bytes of a CSV file: ``header``, then every row of ``rows`` as it is read."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([csv_cell(name) for name in header])
    for row in rows:
        writer.writerow([csv_cell(value) for value in row])
        if buffer.tell() >= FLUSH_BYTES:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def queryset_rows(queryset: QuerySet[Any], columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
    """The ``columns`` of every row of ``queryset``, in its order, fetched ``CHUNK_SIZE`` rows at a time."""
    return queryset.values_list(*columns).iterator(chunk_size=CHUNK_SIZE)


def csv_response(*, name: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> StreamingHttpResponse:
    """A streamed ``text/csv`` download named ``<name>-<UTC timestamp>.csv``.

    ``name`` is ours (a model or report name), never request data, so it is safe in the header.
    """
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response = StreamingHttpResponse(csv_stream(header, rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}-{stamp}.csv"'
    # Who accessed which patient is itself sensitive: no shared or browser cache may keep a copy.
    response["Cache-Control"] = "no-store"
    return response
