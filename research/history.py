"""django-auditlog's change history for the research tables: requests and datasets hold no patient
data (criteria, counts, file digests), so they are registered whole, like the exchange packages."""

from __future__ import annotations


def register_change_history() -> None:
    from auditlog.registry import auditlog

    from research.models import Dataset, DatasetRequest

    if not auditlog.contains(DatasetRequest):
        auditlog.register(DatasetRequest)
    if not auditlog.contains(Dataset):
        auditlog.register(Dataset)
