"""Checking the audit chains (audit/chain.py): finds altered, inserted, deleted, truncated and unsealed events.

Each chain (table, partition) is cut into segments of consecutive ``seq`` numbers; each segment is
streamed in ``seq`` order with a server-side cursor, recomputing every row's mac and link, so memory
stays flat. Segments are independent (each row carries the hash it links to), so they run in parallel
processes where there are several cores (``jobs``); the joins between segments are checked afterwards.
The first problem of each chain is reported, naming the event by table, partition, sequence number and id.

Then: events still unsealed after ``AUDIT_SEAL_MAX_DELAY`` (the sealer is down), sealed accesses not yet
judged by the sealer after that delay (``ANOMALY_RULES_AT = "sealer"``), direct database changes
that no longer match their seals, and the database's guards (``guard_problems``).
"""

from __future__ import annotations

import hmac
import multiprocessing
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, connections
from django.db.models import Count, Max
from django.utils import timezone

from audit.chain import (
    GENESIS,
    V1_FIELDS,
    AuditChainHead,
    Chained,
    content_fields,
    link,
    link_hash_v1,
    row_mac,
)
from audit.guards import guard_problems
from audit.models import AccessEvent, AuthEventRecord, ChangeEvent, DirectChange, DirectChangeSeal
from audit.sealing import COPIED, seal_direct_changes

CHAINED_MODELS: tuple[type[Chained], ...] = (AccessEvent, ChangeEvent, AuthEventRecord, DirectChangeSeal)
FETCH = 5000  # rows per round trip of the server-side cursor
SEGMENT = 100_000  # sequence numbers per unit of parallel work
MAX_DIRECT_PROBLEMS = 100  # one line per bad direct change, up to this many; then a count
Start = tuple[int, str]  # (seq, hash) of the last event already trusted (a checkpoint), or (0, GENESIS)


@dataclass(frozen=True)
class Problem:
    stream: str
    partition: int
    seq: int | None
    event_id: int | None
    kind: str  # altered, inserted, missing, truncated, unsealed; deleted (a sealed direct change)
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
    events_sealed: int = 0  # pending events sealed by this run


@dataclass(frozen=True)
class Segment:
    """Sequence numbers ``first`` to ``last`` of one chain."""

    stream: str
    partition: int
    first: int
    last: int


@dataclass(frozen=True)
class SegmentResult:
    segment: Segment
    events: int
    first_prev: str | None  # the prev_hash of the segment's first row (None: no row at ``first``)
    last_seq: int  # the last seq seen in order (first - 1 when none)
    last_hash: str
    problem: Problem | None


def _models() -> dict[str, type[Chained]]:
    return {model.STREAM: model for model in CHAINED_MODELS}


def verify_segment(segment: Segment) -> SegmentResult:
    """Recompute every mac and link of one segment, in ``seq`` order; stop at the first problem."""
    model = _models()[segment.stream]
    stream, partition = segment.stream, segment.partition
    names = content_fields(model)
    v1_names = V1_FIELDS[stream]
    rows = (
        model._default_manager.filter(partition=partition, seq__gte=segment.first, seq__lte=segment.last)
        .order_by("seq")
        .values_list("id", "seq", "prev_hash", "hash", "mac", *names)
    )
    expected_seq, prev, first_prev, events = segment.first, None, None, 0
    problem = None
    for event_id, seq, prev_hash, digest, mac, *values in rows.iterator(chunk_size=FETCH):
        events += 1
        if seq < expected_seq:
            problem = Problem(
                stream, partition, seq, event_id, "inserted", "a second event claims this place in the chain"
            )
            break
        if seq > expected_seq:
            detail = f"events {expected_seq} to {seq - 1} are gone"
            problem = Problem(stream, partition, expected_seq, None, "missing", detail)
            break
        if prev is None:
            first_prev = prev_hash
        elif prev_hash != prev:
            problem = Problem(stream, partition, seq, event_id, "altered", "the link to the previous event is broken")
            break
        if mac:
            if not hmac.compare_digest(row_mac(model, values), mac):
                problem = Problem(stream, partition, seq, event_id, "altered", "its content does not match its HMAC")
                break
            recomputed = link(stream, mac, prev_hash, partition, seq)
        else:  # sealed by the first scheme, in the request
            by_name = dict(zip(names, values, strict=True))
            recomputed = link_hash_v1(model, {n: by_name[n] for n in v1_names}, partition, seq, prev_hash)
        if not hmac.compare_digest(recomputed, digest):
            problem = Problem(stream, partition, seq, event_id, "altered", "its content does not match its HMAC")
            break
        prev, expected_seq = digest, seq + 1
    return SegmentResult(segment, events, first_prev, expected_seq - 1, prev or "", problem)


def _run_segments(
    segments: list[Segment], jobs: int, progress: Callable[[int], None] | None
) -> dict[Segment, SegmentResult]:
    results: dict[Segment, SegmentResult] = {}
    parallel = jobs > 1 and len(segments) > 1 and not connection.in_atomic_block
    if not parallel:
        for segment in segments:
            results[segment] = verify_segment(segment)
            if progress:
                progress(results[segment].events)
        return results
    # Closed before the fork, so no worker inherits (and shares) a connection: each opens its own, and the
    # parent reconnects when it next needs to.
    connections.close_all()
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        for result in pool.map(verify_segment, segments):
            results[result.segment] = result
            if progress:
                progress(result.events)
    return results


def _chain_problem(
    stream: str, partition: int, start: Start, results: list[SegmentResult], head: AuditChainHead | None
) -> Problem | None:
    """Join one chain's segments (in order) and compare its end with the head."""
    expected_prev, last_seq = start[1], start[0]
    for result in results:
        if result.events == 0 and result.problem is None:
            continue  # a gap: reported by the next segment that has rows, or by the head check
        if result.segment.first != last_seq + 1:
            detail = f"events {last_seq + 1} to {result.segment.first - 1} are gone"
            return Problem(stream, partition, last_seq + 1, None, "missing", detail)
        if result.problem is not None:
            return result.problem
        if result.first_prev != expected_prev:
            seq = result.segment.first
            return Problem(stream, partition, seq, None, "altered", "the link to the previous event is broken")
        expected_prev, last_seq = result.last_hash, result.last_seq
    if head is None:
        if last_seq > start[0]:
            return Problem(stream, partition, last_seq, None, "inserted", "events exist for a chain with no head")
        return None
    if last_seq < head.last_seq:
        detail = f"events {last_seq + 1} to {head.last_seq} are gone"
        return Problem(stream, partition, last_seq + 1, None, "truncated", detail)
    if last_seq > head.last_seq:
        return Problem(stream, partition, last_seq, None, "inserted", "the chain goes past its recorded head")
    if expected_prev != head.last_hash:
        detail = "the recorded head does not match the last event (rewritten)"
        return Problem(stream, partition, last_seq, None, "altered", detail)
    return None


def verify_chains(
    summary: Summary,
    *,
    jobs: int = 1,
    since: Mapping[tuple[str, int], Start] | None = None,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> list[Problem]:
    """Check every chain of every chained table; from ``since``'s (seq, hash) per chain where given."""
    since = since or {}
    plans: list[tuple[str, int, Start, AuditChainHead | None, list[Segment]]] = []
    total = 0
    for model in CHAINED_MODELS:
        stream = model.STREAM
        heads = {h.partition: h for h in AuditChainHead.objects.filter(stream=stream)}
        extents = {
            row["partition"]: (row["top"], row["n"])
            for row in model._default_manager.filter(seq__isnull=False)
            .values("partition")
            .annotate(top=Max("seq"), n=Count("id"))
            .order_by()
        }
        for partition in sorted(set(extents) | set(heads)):
            start = since.get((stream, partition), (0, GENESIS))
            top = max(extents.get(partition, (0, 0))[0], heads[partition].last_seq if partition in heads else 0)
            segments = [
                Segment(stream, partition, first, min(first + SEGMENT - 1, top))
                for first in range(start[0] + 1, top + 1, SEGMENT)
            ]
            total += max(0, extents.get(partition, (0, 0))[1] - start[0])
            plans.append((stream, partition, start, heads.get(partition), segments))
    if on_total:
        on_total(total)
    results = _run_segments([s for plan in plans for s in plan[4]], jobs, progress)
    problems = []
    for stream, partition, start, head, segments in plans:
        summary.partitions += 1
        chain_results = [results[segment] for segment in segments]
        summary.events += sum(result.events for result in chain_results)
        problem = _chain_problem(stream, partition, start, chain_results, head)
        if problem is not None:
            problems.append(problem)
    return problems


def unsealed_problems(*, now: Any = None) -> list[Problem]:
    """Events still unsealed longer than ``AUDIT_SEAL_MAX_DELAY`` seconds after they were written."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.AUDIT_SEAL_MAX_DELAY)
    problems = []
    for model in CHAINED_MODELS:
        stale = model._default_manager.filter(hash="", **{"at__lt": cutoff})  # every chained table has `at`
        count = stale.count()
        if count:
            detail = (
                f"{count} event(s) written over {settings.AUDIT_SEAL_MAX_DELAY} s ago are not sealed "
                "(is `manage.py seal_audit --loop` running?)"
            )
            problems.append(Problem(model.STREAM, 0, None, None, "unsealed", detail))
    return problems


def unjudged_problems(*, now: Any = None) -> list[Problem]:
    """With ``ANOMALY_RULES_AT = "sealer"``: sealed access events the sealer has still not judged with the
    anomaly rules ``AUDIT_SEAL_MAX_DELAY`` seconds after they were written (audit/detection/nearline.py)."""
    from audit.detection.nearline import rules_at, unjudged

    if rules_at() != "sealer":
        return []
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.AUDIT_SEAL_MAX_DELAY)
    count = unjudged().filter(at__lt=cutoff).count()
    if not count:
        return []
    detail = (
        f"{count} sealed access event(s) written over {settings.AUDIT_SEAL_MAX_DELAY} s ago are not judged by "
        "the anomaly rules yet (is `manage.py seal_audit --loop` running? see its log)"
    )
    return [Problem(AccessEvent.STREAM, 0, None, None, "unjudged", detail)]


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


def verify_all(
    *,
    seal: bool = True,
    jobs: int = 1,
    since: Mapping[tuple[str, int], Start] | None = None,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> tuple[list[Problem | GuardProblem], Summary]:
    """Check every chain, the unsealed and unjudged backlog, the sealed direct changes, and the database's guards.

    Events the sealer should have sealed (or judged) long ago are reported first; then, with ``seal`` (the
    default), what is pending is sealed (audit/sealer.py, audit/sealing.py) so the check covers it
    and a later deletion of any of it is caught.
    """
    from audit.sealer import seal_events

    problems: list[Problem | GuardProblem] = []
    summary = Summary()
    problems.extend(unsealed_problems())
    problems.extend(unjudged_problems())
    if seal:
        summary.events_sealed = seal_events().total
        summary.sealed = seal_direct_changes().sealed
    problems.extend(verify_chains(summary, jobs=jobs, since=since, progress=progress, on_total=on_total))
    problems.extend(verify_direct_changes())
    problems.extend(GuardProblem(detail) for detail in guard_problems(connection))
    return problems, summary
