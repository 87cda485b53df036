"""Fixtures shared by the FHIR import and package tests."""

from __future__ import annotations

from typing import Any

import pytest

from exchange.fhir import importer


@pytest.fixture
def stale_reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """The first ``stale`` bundle imports read no existing records, as if the import that wrote them had
    not committed yet when they looked (what a concurrent import sees before the other's COMMIT)."""
    state = {"stale": 1, "imports": 0}
    real_init, real_existing = importer._BundleImport.__init__, importer._BundleImport._existing

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        state["imports"] += 1
        self.stale = state["imports"] <= state["stale"]

    def existing(self: Any, patient_pk: int, model: Any) -> dict[str, int]:
        if self.stale:
            return self.existing.setdefault(patient_pk, {}).setdefault(model, {})
        return real_existing(self, patient_pk, model)

    monkeypatch.setattr(importer._BundleImport, "__init__", init)
    monkeypatch.setattr(importer._BundleImport, "_existing", existing)
    return state
