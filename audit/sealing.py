"""Sealing the direct-change rows: verify each one's marker and chain a copy of it (DESIGN.md §6).

``audit_directchange`` is written by a database trigger, which cannot make an HMAC (the key is not
in the database) and cannot check the application's marker MAC either. The sealer, which runs in the
application (``manage.py seal_audit`` from a timer, and at the start of ``verify_audit``), takes every
row that has no seal yet, decides whether its marker verifies (healthcrypt/markers.py: right MAC, and
the transaction id the row was written in), and appends a :class:`DirectChangeSeal` with a copy of the
row onto the single ``direct`` chain (audit/chain.py). From then on, deleting or editing the row
breaks the match with its seal, and deleting the seal breaks the chain; verify_audit reports both.

"Not yet sealed" is an anti-join, not "id above the last sealed id": a long transaction can commit a
row with a lower id after higher ones were sealed, and it must still be sealed. Over the whole table
that anti-join grows with it (every clinical write adds a row: millions a year), so the sealer's loop
runs it over the most recent ``RECENT`` ids only, an index range whatever the table's size, and over
the whole table every ``AUDIT_SEAL_FULL_INTERVAL`` seconds (and ``seal_audit`` without ``--loop``,
``verify_audit`` and ``audit_checkpoint`` always do): a row committed later than ``RECENT`` newer ids
is sealed by the next full pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Exists, Max, OuterRef, QuerySet

from audit.chain import lock_head, seal_and_insert
from audit.models import DirectChange, DirectChangeSeal
from healthcrypt.markers import verify_marker

logger = logging.getLogger(__name__)

PARTITION = 0  # one chain: one sealer at a time, and a total order of what it sealed
BATCH = 1000
# Ids below the last sealed one a recent pass still looks at: rows of transactions that committed late.
RECENT = 1_000
# The columns a seal copies from its direct change, and compares when verifying.
COPIED = (
    "table_name",
    "operation",
    "row_id",
    "actor_marker",
    "db_user",
    "client_addr",
    "backend_pid",
    "txid",
    "application_name",
    "command",
)


@dataclass
class SealResult:
    sealed: int = 0
    unverified: int = 0
    unverified_ids: list[int] = field(default_factory=list)


def unsealed(*, above: int | None = None) -> QuerySet[DirectChange]:
    """Direct changes without a seal, oldest first (an anti-join: see the module docstring); ``above``:
    only those with a greater id (a recent pass)."""
    seals = DirectChangeSeal.objects.filter(direct_change_id=OuterRef("pk"))
    rows = DirectChange.objects.all()
    if above is not None:
        # The same range on both sides, so that the anti-join reads two index ranges, not a whole table.
        rows, seals = rows.filter(id__gt=above), seals.filter(direct_change_id__gt=above)
    return rows.filter(~Exists(seals)).order_by("id")


def recent_floor() -> int | None:
    """Where a recent pass starts: ``RECENT`` ids below the last sealed change (None: none sealed yet,
    look at everything)."""
    last = DirectChangeSeal.objects.aggregate(last=Max("direct_change_id"))["last"]
    return None if last is None else int(last) - RECENT


def seal_for(change: DirectChange) -> DirectChangeSeal:
    """The seal of ``change``: a copy of it, and whether its marker verifies for its transaction."""
    marker = verify_marker(change.actor_marker, txid=change.txid)
    return DirectChangeSeal(
        direct_change_id=change.pk,
        change_at=change.at,
        verified=marker is not None,
        actor=marker.actor if marker is not None else "",
        **{name: getattr(change, name) for name in COPIED},
    )


def seal_direct_changes(*, batch: int = BATCH, recent: bool = False) -> SealResult:
    """Seal every direct change that has none yet, in batches of ``batch``, one transaction each;
    ``recent``: only among the last ``RECENT`` ids and above (the loop's rounds between full passes).

    Idempotent, and safe to run concurrently: the chain head is locked before the unsealed rows are
    read, so a second sealer waits and then finds nothing left to seal.
    """
    result = SealResult()
    above = recent_floor() if recent else None
    while unsealed(above=above).exists():  # checked first, so that nothing is locked or created when idle
        with transaction.atomic():
            lock_head(DirectChangeSeal.STREAM, PARTITION)
            changes = list(unsealed(above=above)[:batch])
            if not changes:
                break
            seals = [seal_for(change) for change in changes]
            seal_and_insert(seals, partition=PARTITION)
            # A change without a verifiable marker was made outside the application: alert now,
            # in the sealing transaction (audit/rules.py direct_change; scan_access catches up too).
            if any(not seal.verified for seal in seals):
                from audit.detection import judge_seals

                judge_seals(seal for seal in seals if not seal.verified)
        for seal in seals:
            if not seal.verified:
                result.unverified += 1
                result.unverified_ids.append(seal.direct_change_id)
        result.sealed += len(seals)
        if len(changes) < batch:
            break
    if result.unverified:
        # Ids and counts only: the rows name tables and logins, never patient data.
        logger.warning(
            "%d direct database change(s) without a valid application marker sealed (first ids: %s)",
            result.unverified,
            result.unverified_ids[:20],
        )
    return result
