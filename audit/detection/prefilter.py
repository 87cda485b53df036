"""Which stored events a rule can fire on: the database filters before anything reaches Python.

Each filter may let through more than its rule needs, never less; Python judges every candidate with
the inline rules (tests/audit/test_scan_access.py checks that a filtered scan finds what a full one does).
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Collection, Mapping
from typing import Any

from django.db.models import Count, DateTimeField, Exists, ExpressionWrapper, OuterRef, Q, Subquery
from django.db.models import F as F_
from django.db.models.functions import ExtractHour, TruncHour

from audit import facts as F
from audit import rules
from audit.models import AccessEvent, ActivityBaseline, shows_section

# More busy hours than this and the candidate filter below would be a very long OR: read everything.
HEAVY_BUCKETS_MAX = 2000


def _of_actors(actors: Collection[int | None] | None) -> Q:
    """Events of these actors (None among them: events with no actor); all events when ``actors`` is None."""
    if actors is None:
        return Q()
    wanted = Q(actor_id__in=[a for a in actors if a is not None])
    return wanted | Q(actor_id__isnull=True) if None in actors else wanted


def heavy_buckets(
    since: datetime.datetime, until: datetime.datetime, actors: Collection[int | None] | None = None
) -> list[tuple[int, datetime.datetime]]:
    """(user, clock hour) pairs in which a user opened more distinct patients than the bulk-browsing
    floor: the only hours in which that rule can fire. One aggregate query (of ``actors`` only, when given)."""
    opened = (
        AccessEvent.objects.filter(
            _of_actors(actors),
            at__gte=F.window_start(since),
            at__lt=until,
            actor_id__isnull=False,
            patient_id__isnull=False,
            action__in=rules.OPEN_ACTIONS,
        )
        .exclude(shows_section(rules.AUDIT_TRAIL_CATEGORY))
        .annotate(bucket=TruncHour("at", tzinfo=datetime.UTC))
        .values("actor_id", "bucket")
        .annotate(n=Count("patient_id", distinct=True))
        .filter(n__gt=rules.BULK_FLOOR)
    )
    return [(row["actor_id"], row["bucket"]) for row in opened]


def _patients(**lookup: Any) -> Any:
    from records.models import Patient

    return Patient.objects.filter(**lookup).values("pk")


def _same_surname_suspects(actors: Collection[int | None] | None = None) -> Q:
    """Accesses by a staff member whose surname blind index some patient shares, to a patient whose
    surname index is some staff member's: a superset of the same-surname rule (which pairs the two)
    in two hashed lookups per row, since the staff index is computed here (HMAC), not stored."""
    from accounts.models import User

    staff = User.objects.exclude(last_name="")
    if actors is not None:  # only their events are read: only their surnames matter
        staff = staff.filter(pk__in=[a for a in actors if a is not None])
    by_index: dict[str, list[int]] = defaultdict(list)
    for pk, last_name in staff.values_list("pk", "last_name"):
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
    since: datetime.datetime,
    until: datetime.datetime,
    baselines: Mapping[tuple[str, int], rules.Baseline],
    actors: Collection[int | None] | None = None,
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

    heavy = heavy_buckets(since, until, actors)
    if len(heavy) > HEAVY_BUCKETS_MAX:
        return None
    flagged = Patient.objects.filter(
        Q(is_confidential=True) | Q(staff_user__isnull=False) | Q(deceased_date__isnull=False)
    ).values("pk")
    weak = (
        _same_surname_suspects(actors)
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
    since: datetime.datetime,
    until: datetime.datetime,
    baselines: Mapping[tuple[str, int], rules.Baseline],
    actors: Collection[int | None] | None = None,
) -> Any:
    """The candidate access events in (at, id) order, from the start of the window the first one needs.

    ``actors``: only these users' events (the running state of the rules is per user, so another
    user's events change nothing for theirs): the sealer's judging of a batch (audit/detection/nearline.py).
    """
    queryset = AccessEvent.objects.filter(_of_actors(actors), at__gte=F.window_start(since), at__lt=until).annotate(
        hour_slot=F_("actor_id") * 24 + ExtractHour("at", tzinfo=F.zone())
    )
    wanted = candidates(since, until, baselines, actors)
    if wanted is not None:
        queryset = queryset.filter(wanted)
    # detail is read only for search results (a name search's "by"); other rows carry no detail.
    return queryset.order_by("at", "id").values(*F.STREAM_COLUMNS)
