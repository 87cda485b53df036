"""Two sign-in limits from one django-axes handler: a person guessing, and an address spraying.

``AXES_LOCKOUT_PARAMETERS`` names two groups: ``["username", "ip_address"]`` (one account guessed
from one address) and ``"ip_address"`` (password spraying: many usernames from one address). Stock
django-axes compares the larger failure count of the groups with one limit; an address shared by a
ward (a NAT, a proxy) would then be locked after the same five failures that lock one account.
Here the address's count is held to its own, higher limit, ``AXES_ADDRESS_FAILURE_LIMIT``.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from axes.handlers.database import AxesDatabaseHandler
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Count, Max, QuerySet, Sum
from django.http import HttpRequest
from django.utils import timezone


def _failures(attempts: QuerySet[Any]) -> int:
    return int(attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0)


@dataclass(frozen=True)
class LockedAddress:
    ip_address: str
    usernames: int
    failures: int
    last_attempt: datetime.datetime


def locked_addresses() -> list[LockedAddress]:
    """Addresses at their own limit within the cool-off (password spraying), most failures first."""
    since = timezone.now() - settings.AXES_COOLOFF_TIME
    rows = (
        AccessAttempt.objects.filter(attempt_time__gte=since)
        .values("ip_address")
        .annotate(
            failures=Sum("failures_since_start"), usernames=Count("username", distinct=True), last=Max("attempt_time")
        )
        .filter(failures__gte=settings.AXES_ADDRESS_FAILURE_LIMIT)
        .order_by("-failures")
    )
    return [LockedAddress(r["ip_address"], r["usernames"], r["failures"], r["last"]) for r in rows]


class AddressAwareHandler(AxesDatabaseHandler):
    """django-axes' database handler with a limit per username + address and one per address."""

    def get_failures(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> int:
        per_account, *per_address = [_failures(q) for q in self.get_user_attempts(request, credentials)]
        limit, address_limit = settings.AXES_FAILURE_LIMIT, settings.AXES_ADDRESS_FAILURE_LIMIT
        # django-axes compares what this returns with AXES_FAILURE_LIMIT: an address reaches it only
        # when its own count reaches AXES_ADDRESS_FAILURE_LIMIT.
        return max([per_account, *(limit if n >= address_limit else 0 for n in per_address)])


def lockout_counts() -> tuple[int, int]:
    """How many username + address pairs and how many addresses are locked out now (two queries)."""
    since = timezone.now() - settings.AXES_COOLOFF_TIME
    accounts = AccessAttempt.objects.filter(
        attempt_time__gte=since, failures_since_start__gte=settings.AXES_FAILURE_LIMIT
    ).count()
    return accounts, len(locked_addresses())
