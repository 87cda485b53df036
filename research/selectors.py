"""Reads of the research tables for the pages (no patient data: criteria, statuses, counts, reports)."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet

from research.models import Dataset, DatasetRequest


def _with_datasets(queryset: QuerySet[DatasetRequest]) -> QuerySet[DatasetRequest]:
    return queryset.prefetch_related(Prefetch("datasets", queryset=Dataset.objects.order_by("-built_at", "-id")))


def requests_of(researcher: Any) -> QuerySet[DatasetRequest]:
    """The researcher's own requests, newest first, their datasets prefetched (two queries)."""
    return _with_datasets(DatasetRequest.objects.filter(researcher=researcher))


def request_of(researcher: Any, request_id: int) -> DatasetRequest | None:
    """One of the researcher's own requests, or None (another's is not found)."""
    return _with_datasets(DatasetRequest.objects.filter(researcher=researcher, pk=request_id)).first()


def request_for_review(request_id: int) -> DatasetRequest | None:
    queryset = DatasetRequest.objects.select_related("researcher", "decided_by").filter(pk=request_id)
    return _with_datasets(queryset).first()


def newest_dataset(item: DatasetRequest) -> Dataset | None:
    """The newest dataset of a request (from the prefetch when there is one)."""
    datasets = list(item.datasets.all())
    return datasets[0] if datasets else None


def submitted_requests() -> QuerySet[DatasetRequest]:
    """Requests awaiting a decision, oldest first, with their researcher (one query)."""
    return (
        DatasetRequest.objects.filter(status=DatasetRequest.Status.SUBMITTED)
        .select_related("researcher")
        .order_by("created_at", "id")
    )


def built_datasets(limit: int = 100) -> QuerySet[Dataset]:
    """The newest datasets with their request, researcher and builder (one query)."""
    return Dataset.objects.select_related("request", "request__researcher", "built_by").order_by("-built_at", "-id")[
        :limit
    ]
