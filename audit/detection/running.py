"""The access rules' running state, kept by the sealer between judging rounds (``ANOMALY_RULES_AT = "sealer"``).

Bulk browsing and search-then-open need, for each access, what its actor did before it in the same
clock hour (patients opened) and the last minutes (patients found by a name search). Judging a batch
with the bulk scan re-read each actor's hour so far from the database every round: under load, where a
busy user's hour holds thousands of events, that read was the database's largest cost of judging
(bench/README.md, issue 11). The sealer process instead keeps that state in memory and reads only what
is new:

- an actor is *warmed* the first time one of their accesses is judged: their events since the start
  of the window that access needs (``F.window_start``), read in (at, id) order, as the bulk scan does;
- each round then reads the events committed since the last round (``at`` from where the last read
  stopped, every actor: in practice the batch itself) and feeds the warm actors' ones in (at, id) order;
- an event read late (committed after events later than it had been read: a long request) is fed when
  its batch is judged, into its own hour: the counts are per clock hour, so it counts where it belongs,
  though an access judged before it arrived did not count it (as the bulk scan, which reads what has
  committed, would not have either);
- the state is the events' alone, never the judging's: a round whose judging rolls back judges the
  same events again with the same results; a second sealer only makes each process read more.

Memory is bounded: hours and searches older than the rules look back are dropped, and so are actors
idle for longer. The state belongs to one database: each round checks that the last event it read is
still there (a restored database or a test's rollback is not the stream it read) and starts afresh if not.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q

from audit import facts as F
from audit import rules
from audit.detection.bulk import _baselines, _without_jit, judge_groups
from audit.detection.inline import Outcome
from audit.models import AccessEvent

COLUMNS = F.STREAM_COLUMNS
_TICK = datetime.timedelta(microseconds=1)
# How long an idle actor's state is kept, and how far back late events are still counted in their hour.
KEEP = rules.BULK_WINDOW + rules.SEARCH_OPEN_WINDOW


@dataclass
class ActorState(F.ActorWindow):
    """One actor's running state: ``F.ActorWindow`` (what an event counts for, the same results for
    events fed in order), fed in any order: patients opened per clock hour rather than the current
    hour only, and the latest name search of each patient."""

    hours: dict[datetime.datetime, set[int]] = field(default_factory=dict)
    last_at: datetime.datetime | None = None

    def feed(self, row: Mapping[str, Any]) -> tuple[int, bool, bool] | None:
        if self.last_at is None or row["at"] > self.last_at:
            self.last_at = row["at"]
        return super().feed(row)

    def searched(self, patient_id: int, at: datetime.datetime) -> None:
        previous = self.found.get(patient_id)
        if previous is None or at > previous:
            self.found[patient_id] = at

    def opened(self, patient_id: int, at: datetime.datetime) -> tuple[int, bool, bool]:
        patients = self.hours.setdefault(rules.hour_bucket(at), set())
        new = patient_id not in patients
        patients.add(patient_id)
        searched = self.found.get(patient_id)
        by_name = searched is not None and searched <= at and at - searched <= rules.SEARCH_OPEN_WINDOW
        return len(patients), new, by_name

    def prune(self, now: datetime.datetime) -> None:
        """Forget the hours and searches no access from ``now - KEEP`` on can need."""
        oldest_hour = rules.hour_bucket(now - KEEP)
        self.hours = {hour: patients for hour, patients in self.hours.items() if hour >= oldest_hour}
        oldest_search = now - KEEP
        self.found = {patient: at for patient, at in self.found.items() if at >= oldest_search}


@dataclass
class RunningState:
    """The sealer's running state over the access stream (see the module's docstring)."""

    actors: dict[int, ActorState] = field(default_factory=dict)
    # Every event with ``at`` before this has been read (the next round reads from here).
    read_until: datetime.datetime | None = None
    # The results of judged events fed and not judged yet, by event id (popped once judged).
    results: dict[int, tuple[datetime.datetime, tuple[int, bool, bool]]] = field(default_factory=dict)
    # The last event read: checked to be still there at the start of each round.
    anchor: tuple[int, datetime.datetime] | None = None
    # Events read from the database (warm-up and increments): what a round costs.
    read: int = 0

    def valid(self) -> bool:
        if self.anchor is None:
            return not self.actors
        pk, at = self.anchor
        return AccessEvent.objects.filter(pk=pk, at=at).exists()

    def _feed(self, rows: Iterable[Mapping[str, Any]], only: set[int] | None = None) -> None:
        for row in rows:
            key = row["actor_id"] or 0
            if only is not None and key not in only:
                continue
            result = self.actors.setdefault(key, ActorState()).feed(row)
            if result is not None:
                self.results[row["id"]] = (row["at"], result)

    def advance(self, batch: Sequence[Mapping[str, Any]], first: int, last: int) -> dict[int, tuple[int, bool, bool]]:
        """Bring the state up to the batch (rows in (at, id) order, chain seqs ``first``..``last``) and
        return the running results of its judged events, by id."""
        until = max(row["at"] for row in batch) + _TICK
        since = min(row["at"] for row in batch)
        warm = set(self.actors)
        cold = {row["actor_id"] or 0 for row in batch} - warm
        if self.read_until is not None:
            # Late batch events (before the last read, not fed then) first, into their own hours.
            self._feed((row for row in batch if row["at"] < self.read_until and row["id"] not in self.results), warm)
        if self.read_until is not None and until > self.read_until:
            # What committed since the last round, other than the batch (read already): every actor.
            others = list(
                AccessEvent.objects.filter(at__gte=self.read_until, at__lt=until)
                .exclude(partition=0, seq__gte=first, seq__lte=last)
                .order_by("at", "id")
                .values(*COLUMNS)
            )
            self.read += len(others)
            fresh = [*others, *(row for row in batch if row["at"] >= self.read_until)]
            self._feed(sorted(fresh, key=lambda r: (r["at"], r["id"])), warm)
        if cold:
            # Each actor's window so far, once: from the start of what the batch's first access needs.
            rows = list(
                AccessEvent.objects.filter(_actors(cold), at__gte=F.window_start(since), at__lt=until)
                .order_by("at", "id")
                .values(*COLUMNS)
            )
            self.read += len(rows)
            self._feed(rows)
        self.read_until = until if self.read_until is None else max(self.read_until, until)
        self.anchor = (batch[-1]["id"], batch[-1]["at"])
        return {row["id"]: self.results[row["id"]][1] for row in batch if row["id"] in self.results}

    def judged(self, ids: Iterable[int]) -> None:
        """Forget the results of events whose judgement committed; prune what the rules no longer need."""
        for pk in ids:
            self.results.pop(pk, None)
        if self.read_until is None:
            return
        horizon = self.read_until - KEEP
        for key in [key for key, actor in self.actors.items() if actor.last_at is None or actor.last_at < horizon]:
            del self.actors[key]
        for actor in self.actors.values():
            actor.prune(self.read_until)
        for pk in [pk for pk, (at, _) in self.results.items() if at < horizon]:
            del self.results[pk]


def _actors(keys: set[int]) -> Q:
    wanted = Q(actor_id__in=[key for key in keys if key])
    return wanted | Q(actor_id__isnull=True) if 0 in keys else wanted


_STATE = RunningState()


def state() -> RunningState:
    """This process's running state, started afresh when the database is not the stream it read."""
    global _STATE
    if not _STATE.valid():
        _STATE = RunningState()
    return _STATE


def reset() -> None:
    """Forget the running state (the next round warms every actor up again)."""
    global _STATE
    _STATE = RunningState()


def judge_batch(batch: Sequence[Mapping[str, Any]], first: int, last: int) -> Outcome:
    """Judge a batch of sealed access events (rows of ``COLUMNS`` in (at, id) order, chain seqs
    ``first``..``last``) with the running state: the same facts and rules as ``scan_accesses``, without
    reading each actor's hour again. Raises if the facts cannot be gathered (nothing is then judged)."""
    outcome = Outcome()
    outcome.candidates = len(batch)
    if not batch:
        return outcome
    current = state()
    with _without_jit():
        try:
            windows = current.advance(batch, first, last)
        except Exception:
            reset()  # half-fed: start afresh rather than count some events twice
            raise
        groups = list(F.group_accesses(batch))
        if groups:
            actors = {row["actor_id"] for row in batch}
            judge_groups(groups, windows, _baselines(actors), list(rules.ACCESS_RULES), outcome)
    return outcome


def judged(ids: Iterable[int]) -> None:
    """The judgement of these events committed: their results are no longer needed."""
    _STATE.judged(ids)
