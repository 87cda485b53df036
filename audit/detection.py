"""Running the anomaly rules (audit/rules.py): inline on every access, grant, sealed direct change and
sign-in failure, and in bulk over stored events (``manage.py scan_access``).

A rule that fails must not hide data from a clinician: the inline run happens in a savepoint, any
exception is caught, logged without patient data (rule name, event id, exception class) and kept as a
``RuleFailure`` row for the security dashboard, and the read goes on.
"""

from __future__ import annotations

import datetime
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, DateTimeField, Exists, ExpressionWrapper, OuterRef, Q, Subquery
from django.db.models import F as F_
from django.db.models.functions import ExtractHour, TruncHour
from django.utils import timezone

from audit import facts as F
from audit import rules
from audit.alerts import alert_raise
from audit.models import AccessEvent, ActivityBaseline, Alert, AuthEventRecord, DirectChangeSeal, RuleFailure
from audit.rules import Access, AccessFacts, GrantFacts

logger = logging.getLogger(__name__)


def rule_failure_record(rule: str, kind: str, object_id: int | None, exc: BaseException) -> None:
    """Keep a rule failure (class name only: a message could quote data) and log it without PHI."""
    logger.error("Anomaly rule %s failed on %s #%s: %s", rule, kind, object_id, type(exc).__name__)
    try:
        with transaction.atomic():
            RuleFailure.objects.create(rule=rule, kind=kind, object_id=object_id, error=type(exc).__name__[:100])
    except Exception:  # pragma: no cover - the database itself is failing; the log line above remains
        logger.exception("Could not record the failure of rule %s", rule)


@dataclass
class Outcome:
    """What a run found: findings per rule, alerts raised, rule failures."""

    findings: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    raised: list[Alert] = field(default_factory=list)
    failures: int = 0
    judged: int = 0
    # Access events the bulk scan read from the database (the candidates, with their warm-up rows).
    candidates: int = 0


def judge_access(
    access: Access,
    facts: AccessFacts,
    outcome: Outcome,
    *,
    only: str | None = None,
    rule_set: Iterable[rules.Rule] | None = None,
) -> None:
    """Run the access rules on one access and raise an alert per finding; failures are recorded."""
    outcome.judged += 1
    for rule in rules.ACCESS_RULES if rule_set is None else rule_set:
        if only is not None and rule.name != only:
            continue
        try:
            finding = rule.judge(access, facts)
        except Exception as exc:
            outcome.failures += 1
            rule_failure_record(rule.name, "access", access.event_id, exc)
            continue
        if finding is None:
            continue
        outcome.findings[finding.rule] += 1
        alert = alert_raise(
            finding=finding,
            kind="access",
            object_ids=access.event_ids,
            occurred_at=access.at,
            actor_id=access.actor_id,
            actor_username=access.actor_username,
            actor_role=access.actor_role,
            department_id=facts.actor.department_id,
            patient_id=access.patient_id,
            aggregate=True,
            per_patient=finding.rule not in rules.PER_USER_RULES,
        )
        if alert is not None:
            outcome.raised.append(alert)


def judge_new_accesses(actor: Any, events: list[AccessEvent]) -> Outcome:
    """Inline: judge the accesses among ``events`` just written for ``actor``. Never raises."""
    outcome = Outcome()
    if not events or not any(rules.judged(e.action, e.category, e.patient_id) for e in events):
        return outcome
    try:
        with transaction.atomic():
            for access, access_facts in F.inline_facts(actor, events):
                judge_access(access, access_facts, outcome)
    except Exception as exc:
        outcome.failures += 1
        rule_failure_record("facts", "access", events[0].pk, exc)
    return outcome


# --- Break the glass -------------------------------------------------------------------------------


def _grant_facts(grant: Any, grants_before: list[datetime.datetime], confidential: bool, baseline: Any) -> GrantFacts:
    at = grant.granted_at
    return GrantFacts(
        grant_id=grant.pk,
        user_id=grant.user_id,
        patient_id=grant.patient_id,
        granted_at=at,
        confidential=confidential,
        local_hour=F.local_hour(at),
        user_baseline=baseline,
        previous_in_day=sum(1 for t in grants_before if at - rules.BREAK_GLASS_REPEAT_WINDOW <= t < at),
        previous_in_week=sum(1 for t in grants_before if at - rules.REPEATED_BREAK_GLASS_WINDOW <= t < at),
    )


def judge_grant(facts: GrantFacts, outcome: Outcome, *, only: str | None = None, user: Any = None) -> None:
    for rule in rules.GRANT_RULES:
        if only is not None and rule.name != only:
            continue
        try:
            finding = rule.judge(facts)
        except Exception as exc:
            outcome.failures += 1
            rule_failure_record(rule.name, "grant", facts.grant_id, exc)
            continue
        if finding is None:
            continue
        outcome.findings[finding.rule] += 1
        alert = alert_raise(
            finding=finding,
            kind="grant",
            object_ids=[facts.grant_id],
            occurred_at=facts.granted_at,
            actor_id=facts.user_id,
            actor_username=getattr(user, "username", "") if user is not None else "",
            actor_role=getattr(user, "role", "") if user is not None else "",
            department_id=getattr(user, "department_id", None) if user is not None else None,
            patient_id=facts.patient_id,
            # Every grant is its own review; a run of grants past the weekly count is one case.
            aggregate=finding.rule in rules.PER_USER_RULES,
            per_patient=False,
        )
        if alert is not None:
            outcome.raised.append(alert)


def judge_new_grant(grant: Any) -> Outcome:
    """A grant was just made: every grant raises an alert for review. Failures propagate (the grant's
    transaction is undone: an emergency grant nobody reviews is worse than asking again)."""
    from records.models import BreakGlassGrant, Patient

    outcome = Outcome()
    at = grant.granted_at
    before = list(
        BreakGlassGrant.objects.filter(
            user_id=grant.user_id, granted_at__gte=at - rules.REPEATED_BREAK_GLASS_WINDOW, granted_at__lt=at
        )
        .exclude(pk=grant.pk)
        .values_list("granted_at", flat=True)
    )
    confidential = bool(Patient.objects.filter(pk=grant.patient_id, is_confidential=True).exists())
    baseline = F.baselines_for([grant.user_id], []).get((ActivityBaseline.Scope.USER, grant.user_id))
    judge_grant(_grant_facts(grant, before, confidential, baseline), outcome, user=grant.user)
    return outcome


# --- Direct changes and sign-in storms -------------------------------------------------------------


def judge_seals(seals: Iterable[DirectChangeSeal], outcome: Outcome | None = None) -> Outcome:
    """Alert on every sealed direct change whose marker did not verify (made outside the application)."""
    outcome = outcome or Outcome()
    for seal in seals:
        finding = rules.direct_change(seal.verified)
        if finding is None:
            continue
        outcome.findings[finding.rule] += 1
        alert = alert_raise(finding=finding, kind="direct", object_ids=[seal.pk], occurred_at=seal.change_at)
        if alert is not None:
            outcome.raised.append(alert)
    return outcome


def judge_auth_event(record: AuthEventRecord) -> Outcome:
    """Inline: count this event's kind in its 15-minute bucket (one query) and judge the storm rule."""
    outcome = Outcome()
    kinds = rules.LOCKOUT_EVENTS if record.event in rules.LOCKOUT_EVENTS else rules.FAILURE_EVENTS
    if record.event not in kinds:
        return outcome
    try:
        with transaction.atomic():
            start = rules.storm_bucket(record.at)
            count = (
                AuthEventRecord.objects.filter(event__in=kinds, at__gte=start, at__lte=record.at)
                .filter(Q(at__lt=record.at) | Q(pk__lte=record.pk))
                .count()
            )
            _judge_storm(record.pk, record.event, record.at, count, outcome)
    except Exception as exc:
        rule_failure_record("lockout_storm", "auth", record.pk, exc)
    return outcome


def _judge_storm(pk: int, event: str, at: datetime.datetime, count: int, outcome: Outcome) -> None:
    finding = rules.lockout_storm(event, count)
    if finding is None:
        return
    outcome.findings[finding.rule] += 1
    alert = alert_raise(finding=finding, kind="auth", object_ids=[pk], occurred_at=at)
    if alert is not None:
        outcome.raised.append(alert)


# --- Bulk: scan_access ----------------------------------------------------------------------------

CHUNK = 20_000
SCAN_RULES = tuple(rules.ALL_RULES)


# More busy hours than this and the candidate filter below would be a very long OR: read everything.
HEAVY_BUCKETS_MAX = 2000


def heavy_buckets(since: datetime.datetime, until: datetime.datetime) -> list[tuple[int, datetime.datetime]]:
    """(user, clock hour) pairs in which a user opened more distinct patients than the bulk-browsing
    floor: the only hours in which that rule can fire. One aggregate query."""
    opened = (
        AccessEvent.objects.filter(
            at__gte=F.window_start(since),
            at__lt=until,
            actor_id__isnull=False,
            patient_id__isnull=False,
            action__in=rules.OPEN_ACTIONS,
        )
        .exclude(category=rules.AUDIT_TRAIL_CATEGORY)
        .annotate(bucket=TruncHour("at", tzinfo=datetime.UTC))
        .values("actor_id", "bucket")
        .annotate(n=Count("patient_id", distinct=True))
        .filter(n__gt=rules.BULK_FLOOR)
    )
    return [(row["actor_id"], row["bucket"]) for row in opened]


def _patients(**lookup: Any) -> Any:
    from records.models import Patient

    return Patient.objects.filter(**lookup).values("pk")


def _same_surname_suspects() -> Q:
    """Accesses by a staff member whose surname blind index some patient shares, to a patient whose
    surname index is some staff member's: a superset of the same-surname rule (which pairs the two)
    in two hashed lookups per row, since the staff index is computed here (HMAC), not stored."""
    from accounts.models import User

    by_index: dict[str, list[int]] = defaultdict(list)
    for pk, last_name in User.objects.exclude(last_name="").values_list("pk", "last_name"):
        index = F.surname_index(last_name)
        if index:
            by_index[index].append(pk)
    return Q(
        actor_id__in=[pk for pks in by_index.values() for pk in pks],
        patient_id__in=_patients(family_name_index__in=sorted(by_index)),
    )


def _same_address_suspects() -> Q:
    """Accesses by a staff member with a patient record of their own, to a patient living at the
    address of some staff member's record: a superset of the same-address rule, in one subquery."""
    from records.models import Patient

    staff_records = Patient.objects.filter(staff_user__isnull=False).exclude(address_index="")
    return Q(
        actor_id__in=staff_records.values("staff_user_id"),
        patient_id__in=_patients(address_index__in=staff_records.values("address_index")),
    )


def _after_hours_suspects(baselines: Mapping[tuple[str, int], rules.Baseline]) -> Q:
    """Accesses in an hour outside the actor's usual hours, for actors with enough history: one
    membership test of (actor, local hour), numbered ``actor_id * 24 + hour`` (``hour_slot``,
    annotated by ``candidate_events``), so the hour is computed once per row."""
    slots = [
        user_id * 24 + hour
        for (scope, user_id), baseline in baselines.items()
        if scope == ActivityBaseline.Scope.USER and baseline.events >= rules.MIN_BASELINE_EVENTS
        for hour in range(24)
        if hour not in baseline.usual_hours
    ]
    return Q(hour_slot__in=slots)


def _search_then_open_suspects(since: datetime.datetime, until: datetime.datetime) -> Q:
    """Accesses preceded by a search result naming the same patient for the same actor within the
    window; the correlated lookup is tried only for actors who had search results at all."""
    results = AccessEvent.objects.filter(action="search_result", at__gte=F.window_start(since), at__lt=until)
    # Looked up by (patient, at) with no window bounds of its own: a range on ``at`` alone would
    # lead SQLite's planner to the time index and a scan of the whole window per row.
    recent = AccessEvent.objects.filter(
        action="search_result",
        actor_id=OuterRef("actor_id"),
        patient_id=OuterRef("patient_id"),
        at__lte=OuterRef("at"),
        at__gte=ExpressionWrapper(OuterRef("at") - rules.SEARCH_OPEN_WINDOW, output_field=DateTimeField()),
    )
    return Q(actor_id__in=results.values("actor_id")) & Q(Exists(recent))


def _without_open_order() -> Q:
    """Radiology and lab accesses with no open order of their kind for the actor's department at that
    moment: exactly the order rule's test (audit/facts.py order_open_at), as NOT EXISTS."""
    from accounts.models import User
    from records.models import Order

    department = Subquery(User.objects.filter(pk=OuterRef(OuterRef("actor_id"))).values("department_id")[:1])
    wanted = Q(pk__in=[])
    for role, kind in rules.ORDER_ROLES.items():
        open_order = Order.objects.filter(
            patient_id=OuterRef("patient_id"), department_id=department, kind=kind, ordered_at__lte=OuterRef("at")
        ).filter(Q(status__in=Order.OPEN_STATUSES) | Q(completed_at__gte=OuterRef("at")))
        wanted |= Q(actor_role=role) & ~Q(Exists(open_order))
    return wanted


def candidates(
    since: datetime.datetime, until: datetime.datetime, baselines: Mapping[tuple[str, int], rules.Baseline]
) -> Q | None:
    """The events on which some access rule can fire, as a filter the database applies (None: all).

    Each term is a superset of what one or more rules need; Python still judges every row it reads
    with the same rules as inline, so a looser term costs time, never a finding. A rule fires only on:

    * an opening with no explanation (unexplained view);
    * a radiology or lab opening without an open order of its kind (order rule);
    * a flagged patient: confidential, deceased, an employee (VIP, deceased, coworker, self-lookup);
    * a weak explanation ("ward") *and* one of: the patient's surname index is the actor's, the
      patient lives at a staff member's address, the hour is outside the actor's usual hours, or a
      name search by the actor found the patient just before (the relational and behavioural rules);
    * an hour with more distinct patients than the bulk floor (bulk browsing).

    Search results are read to find the search-then-open case. Every other access (an attending
    opening their own patient, a ward nurse on her ward in her usual hours) is left in the database.
    The streamed events get the same facts as inline; in the hours left out the bulk count is
    partial, but there it cannot reach the limit, which is never under the floor.
    """
    from records.models import Patient

    heavy = heavy_buckets(since, until)
    if len(heavy) > HEAVY_BUCKETS_MAX:
        return None
    flagged = Patient.objects.filter(
        Q(is_confidential=True) | Q(staff_user__isnull=False) | Q(deceased_date__isnull=False)
    ).values("pk")
    weak = (
        _same_surname_suspects()
        | _same_address_suspects()
        | _after_hours_suspects(baselines)
        | _search_then_open_suspects(since, until)
    )
    wanted = (
        Q(action="search_result")
        | Q(explanation="", action__in=rules.OPEN_ACTIONS)
        | _without_open_order()
        | Q(patient_id__in=flagged)
        | Q(explanation__in=rules.WEAK_EXPLANATIONS) & weak
    )
    for actor_id, bucket in heavy:
        wanted |= Q(actor_id=actor_id, at__gte=bucket, at__lt=bucket + rules.BULK_WINDOW)
    return wanted


def candidate_events(
    since: datetime.datetime, until: datetime.datetime, baselines: Mapping[tuple[str, int], rules.Baseline]
) -> Any:
    """The candidate access events in (at, id) order, from the start of the window the first one needs."""
    queryset = AccessEvent.objects.filter(at__gte=F.window_start(since), at__lt=until).annotate(
        hour_slot=F_("actor_id") * 24 + ExtractHour("at", tzinfo=F.zone())
    )
    wanted = candidates(since, until, baselines)
    if wanted is not None:
        queryset = queryset.filter(wanted)
    # detail is read only for search results (a name search's "by"); other rows carry no detail.
    return queryset.order_by("at", "id").values(*F.EVENT_COLUMNS, "detail")


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
) -> Outcome:
    """Judge every access in [since, until) with the inline rules, gathering facts per chunk with
    set-based queries (patients, actors, orders: one query each per chunk; baselines once)."""
    with _without_jit():
        return _scan_accesses(since=since, until=until, only=only, progress=progress)


def _scan_accesses(
    *,
    since: datetime.datetime,
    until: datetime.datetime,
    only: str | None,
    progress: Callable[[int], None] | None,
) -> Outcome:
    from accounts.models import User

    outcome = Outcome()
    rule_set = [r for r in rules.ACCESS_RULES if only is None or r.name == only]
    if not rule_set:
        return outcome
    baselines = F.baselines_for()
    actors: dict[int, tuple[int | None, str]] = {}
    own: dict[int, tuple[int, str]] = {}
    patients: dict[int, rules.PatientFacts] = {}
    windows: dict[int, F.ActorWindow] = defaultdict(F.ActorWindow)
    for chunk in _chunks(candidate_events(since, until, baselines).iterator(chunk_size=CHUNK), CHUNK):
        outcome.candidates += len(chunk)
        # Running state first, for every row in order (rows before ``since`` only warm it up).
        judged_windows: dict[int, tuple[int, bool, bool]] = {}
        for row in chunk:
            result = windows[row["actor_id"] or 0].feed(row)
            if result is not None:
                judged_windows.setdefault(row["id"], result)
        groups = [(row, ids) for row, ids in F.group_accesses(chunk) if row["at"] >= since]
        if not groups:
            continue
        new_actors = {row["actor_id"] for row, _ in groups if row["actor_id"] and row["actor_id"] not in actors}
        if new_actors:
            for pk, department_id, last_name in User.objects.filter(pk__in=new_actors).values_list(
                "pk", "department_id", "last_name"
            ):
                actors[pk] = (department_id, last_name)
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
        if progress is not None:
            progress(len(chunk))
    return outcome


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
    """Lockout storms: failures and lockouts per 15-minute bucket, aggregated in SQL; only the
    buckets that reach a threshold are read event by event, to find the crossing event."""
    outcome = Outcome()
    start = rules.storm_bucket(since)
    for kinds, threshold in (
        (rules.LOCKOUT_EVENTS, rules.LOCKOUT_STORM_COUNT),
        (rules.FAILURE_EVENTS, rules.FAILED_STORM_COUNT),
    ):
        events = AuthEventRecord.objects.filter(event__in=kinds, at__gte=start, at__lt=until)
        # Fixed 15-minute buckets, counted in Python from (at) only: one narrow column, one query.
        counts: Mapping[datetime.datetime, int] = defaultdict(int)
        for at in events.values_list("at", flat=True).iterator(chunk_size=CHUNK):
            counts[rules.storm_bucket(at)] += 1  # type: ignore[index]
        for bucket, count in counts.items():
            if count < threshold:
                continue
            in_bucket = events.filter(at__gte=bucket, at__lt=bucket + rules.STORM_BUCKET).order_by("at", "id")
            for n, (pk, event, at) in enumerate(in_bucket.values_list("pk", "event", "at"), start=1):
                if n == threshold:
                    if at >= since:
                        _judge_storm(pk, event, at, n, outcome)
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
    for name, part in (("grant", scan_grants), ("direct", scan_direct), ("auth", scan_auth)):
        if only is not None and rules.ALL_RULES[only].kind != name:
            continue
        result = part(since=since, until=until, only=only) if name == "grant" else part(since=since, until=until)
        for rule, n in result.findings.items():
            outcome.findings[rule] += n
        outcome.raised += result.raised
        outcome.failures += result.failures
    return outcome


def access_count(since: datetime.datetime, until: datetime.datetime) -> int:
    """How many events scan_accesses will read (for the progress bar)."""
    return AccessEvent.objects.filter(at__gte=F.window_start(since), at__lt=until).aggregate(n=Count("id"))["n"]
