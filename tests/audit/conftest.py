from __future__ import annotations

from tests.records.conftest import ward  # noqa: F401  (the small ward of the records tests)
