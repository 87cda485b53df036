"""Checking the audit chains (audit/chain.py): finds altered, inserted, deleted and truncated events.

Streams each (table, partition) in ``seq`` order with a server-side cursor, recomputing every HMAC,
so memory stays flat and a million events take seconds. The first problem of each partition is
reported, naming the event by table, partition, sequence number and id.

Then the direct database changes: each sealed one must still match its seal (audit/sealing.py), and
the database's guards must all be in place and switched on (audit/guards.py: ``guard_problems``).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db import connection

from audit.chain import CHAIN_FIELDS, GENESIS, AuditChainHead, Chained, content_fields, link_hash
from audit.guards import guard_problems
from audit.models import AccessEvent, AuthEventRecord, ChangeEvent, DirectChange, DirectChangeSeal
from audit.sealing import COPIED, seal_direct_changes

CHAINED_MODELS: tuple[type[Chained], ...] = (AccessEvent, ChangeEvent, AuthEventRecord, DirectChangeSeal)
FETCH = 5000
MAX_DIRECT_PROBLEMS = 100  # one line per bad direct change, up to this many; then a count


@dataclass(frozen=True)
class Problem:
    stream: str
    partition: int
    seq: int | None
    event_id: int | None
    kind: str  # altered, inserted, missing, truncated; deleted (a sealed direct change)
    detail: str

    def __str__(self) -> str:
        where = f"{self.stream} partition {self.partition}"
        if self.seq is not None:
            where += f" seq {self.seq}"
        if self.event_id is not None:
            where += f" (event id {self.event_id})"
        return f"{self.kind.upper()}: {where}: {self.detail}"


@dataclass(frozen=True)
class GuardProblem:
    """A database guard that is missing, disabled or altered (audit/guards.py)."""

    detail: str

    def __str__(self) -> str:
        return f"GUARD: {self.detail}"


@dataclass
class Summary:
    events: int = 0
    partitions: int = 0
    sealed: int = 0  # direct changes sealed by this run


def _partition_rows(model: type[Chained], partition: int) -> Iterator[dict[str, Any]]:
    """The rows of one chain in ``seq`` order, as column name -> value (the values of a hash's input)."""
    names = [*CHAIN_FIELDS, *content_fields(model)]
    rows = model._default_manager.filter(partition=partition).order_by("seq").values_list(*names)
    for row in rows.iterator(chunk_size=FETCH):
        yield dict(zip(names, row, strict=True))


def verify_partition(
    model: type[Chained], partition: int, head: AuditChainHead | None, summary: Summary
) -> Problem | None:
    """The first problem in one chain, or None when it is intact up to its head."""
    expected_seq, prev = 1, GENESIS
    stream = model.STREAM
    for row in _partition_rows(model, partition):
        summary.events += 1
        seq, event_id = int(row["seq"]), int(row["id"])
        if seq < expected_seq:
            return Problem(
                stream, partition, seq, event_id, "inserted", "a second event claims this place in the chain"
            )
        if seq > expected_seq:
            return Problem(
                stream, partition, expected_seq, None, "missing", f"events {expected_seq} to {seq - 1} are gone"
            )
        recomputed = link_hash(model, row, partition, seq, str(row["prev_hash"]))
        if row["prev_hash"] != prev:
            return Problem(stream, partition, seq, event_id, "altered", "the link to the previous event is broken")
        if not hmac.compare_digest(recomputed, str(row["hash"])):
            return Problem(stream, partition, seq, event_id, "altered", "its content does not match its HMAC")
        prev, expected_seq = str(row["hash"]), seq + 1
    last_seq = expected_seq - 1
    if head is None:
        if last_seq:
            return Problem(stream, partition, last_seq, None, "inserted", "events exist for a chain with no head")
        return None
    if last_seq < head.last_seq:
        return Problem(
            stream, partition, last_seq + 1, None, "truncated", f"events {last_seq + 1} to {head.last_seq} are gone"
        )
    if last_seq > head.last_seq:
        return Problem(stream, partition, last_seq, None, "inserted", "the chain goes past its recorded head")
    if prev != head.last_hash:
        return Problem(
            stream, partition, last_seq, None, "altered", "the recorded head does not match the last event (rewritten)"
        )
    return None


def verify_direct_changes() -> list[Problem]:
    """Every sealed direct change must still exist and match the copy in its seal."""
    problems: list[Problem] = []
    bad = 0
    seals = DirectChangeSeal.objects.order_by("id").values_list("id", "seq", "direct_change_id", "change_at", *COPIED)
    chunk: list[tuple[Any, ...]] = []

    def check(rows: list[tuple[Any, ...]]) -> None:
        nonlocal bad
        ids = [row[2] for row in rows]
        current = {
            row[0]: row[1:]
            for row in DirectChange.objects.filter(pk__in=ids).values_list("id", "at", *COPIED).iterator()
        }
        for seal_id, seq, change_id, *copy in rows:
            if change_id not in current:
                kind, detail = "deleted", f"direct change #{change_id} was deleted after it was sealed"
            elif tuple(copy) != tuple(current[change_id]):
                kind, detail = "altered", f"direct change #{change_id} no longer matches its seal"
            else:
                continue
            bad += 1
            if len(problems) < MAX_DIRECT_PROBLEMS:
                problems.append(Problem(DirectChangeSeal.STREAM, 0, int(seq), int(seal_id), kind, detail))

    for row in seals.iterator(chunk_size=FETCH):
        chunk.append(row)
        if len(chunk) >= FETCH:
            check(chunk)
            chunk = []
    if chunk:
        check(chunk)
    if bad > len(problems):
        problems.append(
            Problem(DirectChangeSeal.STREAM, 0, None, None, "deleted", f"and {bad - len(problems)} more direct changes")
        )
    return problems


def verify_all(*, seal: bool = True) -> tuple[list[Problem | GuardProblem], Summary]:
    """Check every chain of every audit table, the sealed direct changes, and the database's guards.

    With ``seal`` (the default), new direct changes are sealed first (audit/sealing.py), so that the
    check covers them and a later deletion of any of them is caught.
    """
    problems: list[Problem | GuardProblem] = []
    summary = Summary()
    if seal:
        summary.sealed = seal_direct_changes().sealed
    for model in CHAINED_MODELS:
        heads = {h.partition: h for h in AuditChainHead.objects.filter(stream=model.STREAM)}
        used = set(model._default_manager.values_list("partition", flat=True).distinct()) | set(heads)
        for partition in sorted(used):
            summary.partitions += 1
            problem = verify_partition(model, partition, heads.get(partition), summary)
            if problem is not None:
                problems.append(problem)
    problems.extend(verify_direct_changes())
    problems.extend(GuardProblem(detail) for detail in guard_problems(connection))
    return problems, summary
