"""Files the exchange commands write: readable by their owner only, never silently overwritten."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(out: Path, data: str | bytes, *, force: bool) -> None:
    """Write ``data`` to ``out`` with mode 0600; refuse an existing file (FileExistsError) unless ``force``."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with os.fdopen(os.open(out, flags, 0o600), "wb") as handle:
        handle.write(payload)
