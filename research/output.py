"""Dataset files: CSV written row by row, readable by their owner only, never silently overwritten."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path


def write_csv(out: Path, fieldnames: Sequence[str], rows: Iterable[Mapping[str, str]]) -> int:
    """Write ``rows`` to a new file ``out`` (mode 0600) as CSV with a header; return the rows written.

    Refuses an existing file (``FileExistsError``). A row with a column outside ``fieldnames`` is a
    ``ValueError``: a column nobody chose to release must not slip into the file.
    """
    count = 0
    with os.fdopen(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fieldnames), extrasaction="raise")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            count += 1
    return count
