"""The rules run in bulk over stored events (``manage.py scan_access``), with set-based queries per chunk."""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone

from audit import facts as F
from audit import rules
from audit.detection.inline import (
    Outcome,
    _grant_facts,
    judge_access,
    judge_bucket,
    judge_grant,
    judge_seals,
)
from audit.detection.prefilter import (
    candidate_events,
)
from audit.models import AccessEvent, ActivityBaseline, AuthEventRecord, DirectChangeSeal

CHUNK = 20_000
SCAN_RULES = tuple(rules.ALL_RULES)


def _chunks(iterable: Iterator[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in iterable:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@contextmanager
def _without_jit() -> Iterator[None]:
    """PostgreSQL only: no JIT compilation for the scan's queries.

    The candidate filter's correlated subqueries make its estimated cost huge, so PostgreSQL would
    JIT-compile its long filter expression: on 911,648 events that took 5.9 s of a 6.4 s query whose
    filter then costs microseconds per row. Scoped to the transaction when there is one (SET LOCAL),
    otherwise set and reset around the scan.
    """
    if connection.vendor != "postgresql":
        yield
        return
    local = connection.in_atomic_block
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off" if local else "SET jit = off")
    try:
        yield
    finally:
        if not local:
            with connection.cursor() as cursor:
                cursor.execute("RESET jit")


def scan_accesses(
    *,
    since: datetime.datetime,
    until: datetime.datetime,
    only: str | None = None,
    progress: Callable[[int], None] | None = None,
    events: Collection[int] | None = None,
    actors: Collection[int | None] | None = None,
) -> Outcome:
    """Judge every access in [since, until) with the inline rules, gathering facts per chunk with
    set-based queries (patients, actors, orders: one query each per chunk; baselines once).

    ``events`` (ids) and ``actors``: judge only the accesses whose first event is one of ``events``,
    reading only the events of ``actors`` (who must include every actor of ``events``): the sealer
    judging the batch it sealed (audit/detection/nearline.py). Same queries, same facts, same rules.
    """
    with _without_jit():
        return _scan_accesses(
            since=since, until=until, only=only, progress=progress, events=events, event_actors=actors
        )


def _baselines(actors: Collection[int | None] | None) -> dict[tuple[str, int], rules.Baseline]:
    """Every baseline, or only those of ``actors`` and their departments (one more small query)."""
    from accounts.models import User

    if actors is None:
        return F.baselines_for()
    users = [a for a in actors if a is not None]
    departments = User.objects.filter(pk__in=users, department_id__isnull=False).values_list("department_id", flat=True)
    return F.baselines_for(users, list(departments))


def _scan_accesses(
    *,
    since: datetime.datetime,
    until: datetime.datetime,
    only: str | None,
    progress: Callable[[int], None] | None,
    events: Collection[int] | None = None,
    event_actors: Collection[int | None] | None = None,
) -> Outcome:
    outcome = Outcome()
    rule_set = [r for r in rules.ACCESS_RULES if only is None or r.name == only]
    if not rule_set:
        return outcome
    baselines = _baselines(event_actors)
    facts = _FactCache()
    windows: dict[int, F.ActorWindow] = defaultdict(F.ActorWindow)
    for chunk in _chunks(candidate_events(since, until, baselines, event_actors).iterator(chunk_size=CHUNK), CHUNK):
        outcome.candidates += len(chunk)
        # Running state first, for every row in order (rows before ``since`` only warm it up).
        judged_windows: dict[int, tuple[int, bool, bool]] = {}
        for row in chunk:
            result = windows[row["actor_id"] or 0].feed(row)
            if result is not None:
                judged_windows.setdefault(row["id"], result)
        groups = [
            (row, ids)
            for row, ids in F.group_accesses(chunk)
            if row["at"] >= since and (events is None or ids[0] in events)
        ]
        judge_groups(groups, judged_windows, baselines, rule_set, outcome, facts)
        if progress is not None:
            progress(len(chunk))
    return outcome


class _FactCache:
    """What a run has read about actors and patients so far (each read once per run)."""

    def __init__(self) -> None:
        self.actors: dict[int, tuple[int | None, str]] = {}
        self.own: dict[int, tuple[int, str]] = {}
        self.patients: dict[int, rules.PatientFacts] = {}


def judge_groups(
    groups: list[tuple[Any, list[int]]],
    judged_windows: Mapping[int, tuple[int, bool, bool]],
    baselines: Mapping[tuple[str, int], rules.Baseline],
    rule_set: list[rules.Rule],
    outcome: Outcome,
    cache: _FactCache | None = None,
) -> None:
    """Judge accesses (``groups``: the row to judge and its event ids, from ``F.group_accesses``) whose
    running state (``judged_windows``: patients this hour, new this hour, found by name, by first event
    id) is known: the facts in set-based queries (actors, patients and own records, orders: one query
    each), then the inline rules. The bulk scan's and the sealer's judging (audit/detection/running.py)."""
    from accounts.models import User

    if not groups:
        return
    cache = cache or _FactCache()
    actors, own, patients = cache.actors, cache.own, cache.patients
    new_actors = {row["actor_id"] for row, _ in groups if row["actor_id"] and row["actor_id"] not in actors}
    if new_actors:
        for pk, actor_department, last_name in User.objects.filter(pk__in=new_actors).values_list(
            "pk", "department_id", "last_name"
        ):
            actors[pk] = (actor_department, last_name)
    new_patients = {row["patient_id"] for row, _ in groups if row["patient_id"] not in patients}
    if new_patients or new_actors:
        found, owned = F.patients_and_own_records(new_patients, new_actors)
        patients.update(found)
        own.update(owned)
    order_pairs = [
        (row["patient_id"], actors.get(row["actor_id"], (None, ""))[0])
        for row, _ in groups
        if row["actor_role"] in rules.ORDER_ROLES
    ]
    orders = F.orders_for((p for p, _ in order_pairs), (d for _, d in order_pairs if d)) if order_pairs else {}
    actor_facts_cache: dict[int, rules.ActorFacts] = {}
    # One transaction per chunk: each alert is still raised in its own savepoint (alert_raise),
    # but the chunk's alerts commit together instead of one commit (and disk flush) each.
    with transaction.atomic():
        for row, ids in groups:
            patient = patients.get(row["patient_id"], rules.PatientFacts())
            window = judged_windows.get(ids[0], (1, True, False))
            if (
                row["explanation"] not in rules.WEAK_EXPLANATIONS
                and row["actor_role"] not in rules.ORDER_ROLES
                and not (patient.confidential or patient.deceased or patient.staff_user_id is not None)
                and window[0] <= rules.BULK_FLOOR
            ):
                # No access rule can fire (see candidates()): in a busy hour, only counted.
                outcome.judged += 1
                continue
            access = F.access_of(row, ids)
            actor_id = access.actor_id or 0
            me = actor_facts_cache.get(actor_id)
            if me is None:
                department_id, last_name = actors.get(actor_id, (None, ""))
                me = actor_facts_cache[actor_id] = F.actor_facts(department_id, last_name, own.get(actor_id))
            facts = F.facts_of(
                access,
                actor=me,
                patient=patient,
                baselines=baselines,
                orders=orders,
                window=window,
            )
            judge_access(access, facts, outcome, rule_set=rule_set)


def scan_grants(*, since: datetime.datetime, until: datetime.datetime, only: str | None = None) -> Outcome:
    """Judge every break-the-glass grant made in [since, until): four queries whatever the number."""
    from records.models import BreakGlassGrant, Patient

    outcome = Outcome()
    if only is not None and only not in {r.name for r in rules.GRANT_RULES}:
        return outcome
    grants = list(BreakGlassGrant.objects.filter(granted_at__gte=since, granted_at__lt=until).select_related("user"))
    if not grants:
        return outcome
    users = {g.user_id for g in grants}
    history: dict[int, list[datetime.datetime]] = defaultdict(list)
    for user_id, at in BreakGlassGrant.objects.filter(
        user_id__in=users, granted_at__gte=since - rules.REPEATED_BREAK_GLASS_WINDOW, granted_at__lt=until
    ).values_list("user_id", "granted_at"):
        history[user_id].append(at)
    confidential = set(
        Patient.objects.filter(pk__in={g.patient_id for g in grants}, is_confidential=True).values_list("pk", flat=True)
    )
    baselines = F.baselines_for(users, [])
    for grant in grants:
        facts = _grant_facts(
            grant,
            history[grant.user_id],
            grant.patient_id in confidential,
            baselines.get((ActivityBaseline.Scope.USER, grant.user_id)),
        )
        judge_grant(facts, outcome, only=only, user=grant.user)
    return outcome


def scan_direct(*, since: datetime.datetime, until: datetime.datetime) -> Outcome:
    """Alert on every unverified direct change sealed for [since, until): one query."""
    seals = DirectChangeSeal.objects.filter(verified=False, change_at__gte=since, change_at__lt=until).order_by("id")
    return judge_seals(seals)


def scan_auth(*, since: datetime.datetime, until: datetime.datetime) -> Outcome:
    """Lockout storms and partners' probing: events per 15-minute bucket (per username for a partner),
    counted from narrow columns in one query per rule; only the buckets that reach a threshold are read
    event by event, to find the crossing event."""
    outcome = Outcome()
    start = rules.storm_bucket(since)
    for bucket in rules.AUTH_BUCKETS:
        events = AuthEventRecord.objects.filter(event__in=bucket.events, at__gte=start, at__lt=until)
        counts: defaultdict[tuple[str, datetime.datetime], int] = defaultdict(int)
        for username, at in events.values_list("username", "at").iterator(chunk_size=CHUNK):
            counts[(username if bucket.per_username else "", rules.storm_bucket(at))] += 1
        for (username, begins), count in counts.items():
            if count < bucket.threshold:
                continue
            in_bucket = events.filter(at__gte=begins, at__lt=begins + rules.STORM_BUCKET)
            if bucket.per_username:
                in_bucket = in_bucket.filter(username=username)
            rows = in_bucket.order_by("at", "id").values_list("pk", "event", "at")
            for n, (pk, event, at) in enumerate(rows, start=1):
                if n == bucket.threshold:
                    if at >= since:
                        judge_bucket(bucket, pk, event, at, n, outcome)
                    break
    return outcome


def scan(
    *,
    since: datetime.datetime,
    until: datetime.datetime | None = None,
    only: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> Outcome:
    """Re-run every rule (or ``only`` one) over [since, until). Idempotent: never alerts twice."""
    until = until or timezone.now()
    outcome = scan_accesses(since=since, until=until, only=only, progress=progress)
    kind = None if only is None else rules.ALL_RULES[only].kind
    results: list[Outcome] = []
    if kind in (None, "grant"):
        results.append(scan_grants(since=since, until=until, only=only))
    if kind in (None, "direct"):
        results.append(scan_direct(since=since, until=until))
    if kind in (None, "auth"):
        results.append(scan_auth(since=since, until=until))
    for result in results:
        for rule, n in result.findings.items():
            outcome.findings[rule] += n
        outcome.raised += result.raised
        outcome.failures += result.failures
    return outcome


def access_count(since: datetime.datetime, until: datetime.datetime) -> int:
    """How many events scan_accesses will read (for the progress bar)."""
    return int(AccessEvent.objects.filter(at__gte=F.window_start(since), at__lt=until).aggregate(n=Count("id"))["n"])
