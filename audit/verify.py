"""Checking the audit chains (audit/chain.py): finds altered, inserted, deleted and truncated events.

Streams each (table, partition) in ``seq`` order with a server-side cursor, recomputing every HMAC,
so memory stays flat and a million events take seconds. The first problem of each partition is
reported, naming the event by table, partition, sequence number and id.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass

from audit.chain import CHAIN_FIELDS, GENESIS, AuditChainHead, Chained, content_fields, link_hash
from audit.models import AccessEvent, AuthEventRecord, ChangeEvent

CHAINED_MODELS: tuple[type[Chained], ...] = (AccessEvent, ChangeEvent, AuthEventRecord)
FETCH = 5000


@dataclass(frozen=True)
class Problem:
    stream: str
    partition: int
    seq: int | None
    event_id: int | None
    kind: str  # altered, inserted, missing, truncated
    detail: str

    def __str__(self) -> str:
        where = f"{self.stream} partition {self.partition}"
        if self.seq is not None:
            where += f" seq {self.seq}"
        if self.event_id is not None:
            where += f" (event id {self.event_id})"
        return f"{self.kind.upper()}: {where}: {self.detail}"


@dataclass
class Summary:
    events: int = 0
    partitions: int = 0


def _partition_rows(model: type[Chained], partition: int) -> Iterator[dict[str, object]]:
    names = [*CHAIN_FIELDS, *content_fields(model)]
    rows = model.objects.filter(partition=partition).order_by("seq").values_list(*names)
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
        seq, event_id = int(row["seq"]), int(row["id"])  # type: ignore[call-overload]
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
    if last_seq > head.last_seq or prev != head.last_hash:
        return Problem(stream, partition, last_seq, None, "inserted", "the chain goes past its recorded head")
    return None


def verify_all() -> tuple[list[Problem], Summary]:
    """Check every chain of every audit table."""
    problems: list[Problem] = []
    summary = Summary()
    for model in CHAINED_MODELS:
        heads = {h.partition: h for h in AuditChainHead.objects.filter(stream=model.STREAM)}
        used = set(model.objects.values_list("partition", flat=True).distinct()) | set(heads)
        for partition in sorted(used):
            summary.partitions += 1
            problem = verify_partition(model, partition, heads.get(partition), summary)
            if problem is not None:
                problems.append(problem)
    return problems, summary
