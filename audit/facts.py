"""What the anomaly rules read (audit/rules.py), gathered without decrypting anything.

Two ways in, one set of helpers, so that the inline rules and ``scan_access`` agree:

* inline, for the accesses of one request: one query whatever the size of the chart (a UNION ALL of
  small indexed reads: the actor's own record, the baselines, the actor's last hour, open orders for
  radiology and lab users, and the patients whose row the read path did not already carry);
* in bulk, for a window of stored events: set-based queries per chunk (all patients, actors, orders
  and baselines the chunk needs, each in one query), and one pass over the events in time order
  that keeps the per-user running state (distinct patients this hour, recent name searches).

Patients are compared by plaintext flags and blind indexes only; a staff member's surname goes
through the same blind index as patients' (records/crypto.py), never plaintext SQL.
"""

from __future__ import annotations

import datetime
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db.models import BooleanField, Count, ExpressionWrapper, Q
from django.db.models.functions import ExtractHour, TruncHour
from django.utils import timezone

from audit import rules
from audit.models import AccessEvent, ActivityBaseline, sections_of, shows_section
from audit.rules import Access, AccessFacts, ActorFacts, Baseline, PatientFacts
from records.crypto import family_name_index
from records.models import Order, Patient
from records.selectors.sections import Section, sections_read

# The columns of an access event the rules read (never ``detail`` beyond a search's "by").
EVENT_COLUMNS = (
    "id",
    "actor_id",
    "actor_username",
    "actor_role",
    "patient_id",
    "action",
    "category",
    "sections",
    "explanation",
    "at",
)
# The same and ``detail`` (a name search's "by"): the rows the running state is fed, in a scan and in the sealer.
STREAM_COLUMNS = (*EVENT_COLUMNS, "detail")


def surname_index(last_name: str) -> str:
    """Blind index of a staff member's surname, comparable with ``Patient.family_name_index``."""
    return family_name_index(last_name) if last_name and last_name.strip() else ""


@lru_cache(maxsize=1)
def zone() -> zoneinfo.ZoneInfo:
    """The hospital's time zone (TIME_ZONE): local hours here and in scan_access's SQL use it."""
    return zoneinfo.ZoneInfo(settings.TIME_ZONE)


def local_hour(at: datetime.datetime) -> int:
    """The hour of day of ``at`` in the hospital's time zone (TIME_ZONE), cheaply: scan_access asks
    it a million times."""
    return at.astimezone(zone()).hour


# --- Patients, actors, orders, baselines -----------------------------------------------------------

_DECEASED = ExpressionWrapper(Q(deceased_date__isnull=False), output_field=BooleanField())
PATIENT_COLUMNS = ("id", "family_name_index", "address_index", "is_confidential", "staff_user_id")


def _patient_facts(row: Mapping[str, Any]) -> PatientFacts:
    return PatientFacts(
        surname_index=row["family_name_index"],
        address_index=row["address_index"],
        confidential=row["is_confidential"],
        deceased=row["deceased"],
        staff_user_id=row["staff_user_id"],
    )


def patients_and_own_records(
    patient_ids: Iterable[int], staff_ids: Iterable[int]
) -> tuple[dict[int, PatientFacts], dict[int, tuple[int, str]]]:
    """Facts of the patients, and each staff member's own patient record (id, address index): one query."""
    rows = (
        Patient.objects.filter(Q(pk__in=set(patient_ids)) | Q(staff_user_id__in=set(staff_ids)))
        .annotate(deceased=_DECEASED)
        .values(*PATIENT_COLUMNS, "deceased")
    )
    patients: dict[int, PatientFacts] = {}
    own: dict[int, tuple[int, str]] = {}
    for row in rows:
        patients[row["id"]] = _patient_facts(row)
        if row["staff_user_id"] is not None:
            own[row["staff_user_id"]] = (row["id"], row["address_index"])
    return patients, own


def actor_facts(department_id: int | None, last_name: str, own: tuple[int, str] | None) -> ActorFacts:
    return ActorFacts(
        department_id=department_id,
        surname_index=surname_index(last_name),
        own_patient_id=own[0] if own else None,
        address_index=own[1] if own else "",
    )


def order_open_at(order: Mapping[str, Any], at: datetime.datetime) -> bool:
    """Whether an order was open at ``at``: placed by then, and still open or completed later."""
    if order["ordered_at"] > at:
        return False
    if order["status"] in Order.OPEN_STATUSES:
        return True
    return order["completed_at"] is not None and order["completed_at"] >= at


def orders_for(
    patient_ids: Iterable[int], departments: Iterable[int]
) -> dict[tuple[int, int, str], list[Mapping[str, Any]]]:
    """Lab and radiology orders of these patients for these departments, by (patient, department, kind): one query."""
    found: dict[tuple[int, int, str], list[Mapping[str, Any]]] = defaultdict(list)
    rows = Order.objects.filter(patient_id__in=set(patient_ids), department_id__in=set(departments)).values(
        "patient_id", "department_id", "kind", "ordered_at", "completed_at", "status"
    )
    for row in rows:
        found[(row["patient_id"], row["department_id"], row["kind"])].append(row)
    return found


def _baseline(row: ActivityBaseline) -> Baseline:
    return Baseline(frozenset(row.usual_hours), row.peak_patients_per_hour, row.events)


def baselines_for(
    user_ids: Iterable[int] | None = None, department_ids: Iterable[int] | None = None
) -> dict[tuple[str, int], Baseline]:
    """Baselines of these users and departments (all of them when both are None): one query."""
    queryset = ActivityBaseline.objects.all()
    if user_ids is not None or department_ids is not None:
        queryset = queryset.filter(
            Q(scope=ActivityBaseline.Scope.USER, scope_id__in=set(user_ids or ()))
            | Q(scope=ActivityBaseline.Scope.DEPARTMENT, scope_id__in=set(department_ids or ()))
        )
    return {(row.scope, row.scope_id): _baseline(row) for row in queryset}


# --- The running state of one user's stream of events ----------------------------------------------


@dataclass
class ActorWindow:
    """Per user, in time order: the patients opened in the current clock hour and recent name searches."""

    bucket: datetime.datetime | None = None
    patients: set[int] = field(default_factory=set)
    found: dict[int, datetime.datetime] = field(default_factory=dict)

    def feed(self, row: Mapping[str, Any]) -> tuple[int, bool, bool] | None:
        """Take one event; for a judged access, return (patients this hour, new this hour, found by name)."""
        patient_id, at = row["patient_id"], row["at"]
        if row["action"] == "search_result" and patient_id is not None:
            if (row.get("detail") or {}).get("by") in rules.NAME_SEARCHES:
                self.searched(patient_id, at)
            return None
        if not rules.judged(row["action"], sections_of(row), patient_id):
            return None
        return self.opened(patient_id, at)

    def searched(self, patient_id: int, at: datetime.datetime) -> None:
        """A name search found the patient at ``at``."""
        self.found[patient_id] = at

    def opened(self, patient_id: int, at: datetime.datetime) -> tuple[int, bool, bool]:
        """Take one judged access (the caller has judged it): (patients this hour, new, found by name)."""
        bucket = rules.hour_bucket(at)
        if bucket != self.bucket:
            self.bucket, self.patients = bucket, set()
        new = patient_id not in self.patients
        self.patients.add(patient_id)
        searched = self.found.get(patient_id)
        by_name = searched is not None and at - searched <= rules.SEARCH_OPEN_WINDOW
        return len(self.patients), new, by_name


def window_start(at: datetime.datetime) -> datetime.datetime:
    """How far back a user's events matter to the rules for an access at ``at``."""
    return min(rules.hour_bucket(at), at - rules.SEARCH_OPEN_WINDOW)


def group_accesses(rows: Iterable[Mapping[str, Any]]) -> Iterator[tuple[Mapping[str, Any], list[int]]]:
    """Judged access events in time order, as accesses: (the row to judge, the ids of its events).

    An event lists the sections its access showed, so one event is one access. Events written
    before they did (``sections`` empty) came one per section, all at one instant: consecutive ones
    with the same actor, patient, action and instant are still one access, judged once on the
    first event, with the sections of them all (the row yielded then carries them in ``sections``).
    """
    current: dict[str, Any] | None = None
    ids: list[int] = []
    key: tuple[Any, ...] | None = None
    for row in rows:
        if not rules.judged(row["action"], sections_of(row), row["patient_id"]):
            continue
        row_key = None if row.get("sections") else (row["actor_id"], row["patient_id"], row["action"], row["at"])
        if row_key is not None and row_key == key and current is not None:
            ids.append(row["id"])
            current["sections"] = sorted({*current["sections"], *sections_of(row)})
            continue
        if current is not None:
            yield current, ids
        current, ids, key = {**row, "sections": sections_of(row)}, [row["id"]], row_key
    if current is not None:
        yield current, ids


def access_of(row: Mapping[str, Any], ids: list[int]) -> Access:
    return Access(
        event_id=ids[0],
        event_ids=tuple(ids),
        actor_id=row["actor_id"],
        actor_username=row["actor_username"],
        actor_role=row["actor_role"],
        patient_id=row["patient_id"],
        action=row["action"],
        category=row["category"],
        explanation=row["explanation"],
        at=row["at"],
        sections=tuple(sections_of(row)),
    )


def facts_of(
    access: Access,
    *,
    actor: ActorFacts,
    patient: PatientFacts,
    baselines: Mapping[tuple[str, int], Baseline],
    orders: Mapping[tuple[int, int, str], list[Mapping[str, Any]]] | None,
    window: tuple[int, bool, bool],
) -> AccessFacts:
    """The facts of one access from what was gathered (shared by the inline and the bulk path)."""
    open_order: bool | None = None
    kind = rules.ORDER_ROLES.get(access.actor_role)
    if kind is not None:
        candidates = (orders or {}).get((access.patient_id, actor.department_id or 0, kind), [])
        open_order = actor.department_id is not None and any(order_open_at(o, access.at) for o in candidates)
    user = baselines.get((ActivityBaseline.Scope.USER, access.actor_id or 0))
    department = (
        baselines.get((ActivityBaseline.Scope.DEPARTMENT, actor.department_id)) if actor.department_id else None
    )
    count, new, by_name = window
    return AccessFacts(
        actor=actor,
        patient=patient,
        user_baseline=user,
        department_baseline=department,
        local_hour=local_hour(access.at),
        open_order=open_order,
        patients_this_hour=count,
        new_this_hour=new,
        found_by_name_search=by_name,
    )


# The columns of a patient row the rules read, as loaded on a model instance (``staff_user_id``:
# the attribute name of the foreign key). ``deceased_date`` is encrypted: only whether it is set is
# read, from the sealed value, which is never opened here.
CARRIED_COLUMNS = ("family_name_index", "address_index", "is_confidential", "staff_user_id", "deceased_date")


def carried_patient_facts(rows: Iterable[Any]) -> dict[int, PatientFacts]:
    """Facts of patient rows the read path had already loaded (the policy's row, still sealed), by id.

    Read from what the row holds, without decrypting anything and without a query; a row loaded
    without one of these columns is left out (its facts are then read from the database).
    """
    found: dict[int, PatientFacts] = {}
    for row in rows:
        loaded = getattr(row, "__dict__", {})
        if row is None or not all(name in loaded for name in CARRIED_COLUMNS):
            continue
        found[row.pk] = PatientFacts(
            surname_index=loaded["family_name_index"],
            address_index=loaded["address_index"],
            confidential=loaded["is_confidential"],
            deceased=loaded["deceased_date"] is not None,
            staff_user_id=loaded["staff_user_id"],
        )
    return found


def inline_facts(
    actor: Any, events: list[AccessEvent], patients: Iterable[Any] = ()
) -> list[tuple[Access, AccessFacts]]:
    """Facts for the accesses among ``events`` (just written for ``actor``): one query.

    ``patients``: rows of the accessed patients the read path had loaded already (see
    :func:`carried_patient_facts`); the others, the actor's own patient record, the actor's and
    department's baselines, the open orders (radiology and lab) and the actor's recent events are
    read together in one UNION ALL (records/selectors/sections.py), whatever the size of the chart.
    """
    rows = [{name: getattr(e, name) for name in EVENT_COLUMNS} for e in events]
    accesses = [access_of(row, ids) for row, ids in group_accesses(rows)]
    if not accesses:
        return []
    actor_id = getattr(actor, "pk", None)
    department_id = getattr(actor, "department_id", None)
    known = carried_patient_facts(patients)
    needed = {a.patient_id for a in accesses} - set(known)
    # The actor's events the window needs (these included), in the order scan_access reads them, but
    # narrowed in SQL: the judged openings since the start of the clock hour (id, patient, time: no JSON
    # to decode, judged by the same filter as the baselines), and the name searches within the
    # search-then-open window that found the patients opened now. The rows of a busy hour are many;
    # reading them whole, with their JSON, was the largest cost of a request under load (bench/README).
    first = min(a.at for a in accesses)
    last = max(a.at for a in accesses)
    wanted = [
        Section(
            "opened",
            AccessEvent.objects.filter(
                actor_id=actor_id,
                at__gte=rules.hour_bucket(first),
                at__lte=last,
                patient_id__isnull=False,
                action__in=rules.OPEN_ACTIONS,
            ).exclude(shows_section(rules.AUDIT_TRAIL_CATEGORY)),
            ("at", "id"),
            None,
            ("id", "patient_id", "at"),
        ),
        Section(
            "searches",
            AccessEvent.objects.filter(
                actor_id=actor_id,
                action="search_result",
                at__gte=first - rules.SEARCH_OPEN_WINDOW,
                at__lte=last,
                patient_id__in={a.patient_id for a in accesses},
            ),
            ("at", "id"),
            None,
            ("id", "patient_id", "at", "action", "detail"),
        ),
        Section(
            "baselines",
            ActivityBaseline.objects.filter(
                Q(scope=ActivityBaseline.Scope.USER, scope_id=actor_id or 0)
                | Q(scope=ActivityBaseline.Scope.DEPARTMENT, scope_id__in=[department_id] if department_id else [])
            ),
            ("id",),
            None,
            ("scope", "scope_id", "usual_hours", "peak_patients_per_hour", "events"),
        ),
    ]
    if needed or actor_id:
        wanted.append(
            Section(
                "patients",
                Patient.objects.filter(Q(pk__in=needed) | Q(staff_user_id=actor_id or 0)),
                ("id",),
                None,
                (*PATIENT_COLUMNS, ("deceased", _DECEASED)),
            )
        )
    if rules.ORDER_ROLES.get(accesses[0].actor_role) and department_id:
        wanted.append(
            Section(
                "orders",
                Order.objects.filter(patient_id__in={a.patient_id for a in accesses}, department_id=department_id),
                ("id",),
                None,
                ("patient_id", "department_id", "kind", "ordered_at", "completed_at", "status"),
            )
        )
    found = sections_read(wanted)
    own: tuple[int, str] | None = None
    for row in found.get("patients", []):
        if row["id"] in needed:
            known[row["id"]] = _patient_facts(row)
        if actor_id and row["staff_user_id"] == actor_id:
            own = (row["id"], row["address_index"])
    me = actor_facts(department_id, getattr(actor, "last_name", ""), own)
    baselines = {
        (row["scope"], row["scope_id"]): Baseline(
            frozenset(row["usual_hours"]), row["peak_patients_per_hour"], row["events"]
        )
        for row in found["baselines"]
    }
    orders: dict[tuple[int, int, str], list[Mapping[str, Any]]] | None = None
    if "orders" in found:
        orders = defaultdict(list)
        for row in found["orders"]:
            orders[(row["patient_id"], row["department_id"], row["kind"])].append(row)
    state = ActorWindow()
    windows: dict[int, tuple[int, bool, bool]] = {}
    stream = sorted(
        [(row["at"], row["id"], True, row) for row in found.get("opened", [])]
        + [(row["at"], row["id"], False, row) for row in found.get("searches", [])],
        key=lambda item: (item[0], item[1]),
    )
    for _, event_id, opened, row in stream:
        if not opened:
            state.feed(row)
            continue
        windows.setdefault(event_id, state.opened(row["patient_id"], row["at"]))
    out = []
    for access in accesses:
        window = windows.get(access.event_id, (1, True, False))
        patient = known.get(access.patient_id, PatientFacts())
        out.append(
            (access, facts_of(access, actor=me, patient=patient, baselines=baselines, orders=orders, window=window))
        )
    return out


# --- Baselines -------------------------------------------------------------------------------------


def _p95(values: list[int]) -> int:
    if not values:
        return 0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def baselines_refresh(*, until: datetime.datetime | None = None) -> int:
    """Recompute every user's and department's baseline from the BASELINE_DAYS before ``until``.

    Two aggregate queries (events per user and hour of day; distinct patients per user and clock
    hour) and one write per baseline. Returns the number of baselines written.
    """
    from accounts.models import User

    until = until or timezone.now()
    since = until - datetime.timedelta(days=rules.BASELINE_DAYS)
    opened = AccessEvent.objects.filter(
        at__gte=since, at__lt=until, actor_id__isnull=False, patient_id__isnull=False, action__in=rules.OPEN_ACTIONS
    ).exclude(shows_section(rules.AUDIT_TRAIL_CATEGORY))
    hours: dict[int, dict[int, int]] = defaultdict(dict)
    for row in opened.annotate(hour=ExtractHour("at")).values("actor_id", "hour").annotate(n=Count("id")):
        hours[row["actor_id"]][row["hour"]] = row["n"]
    per_hour: dict[int, list[int]] = defaultdict(list)
    for row in (
        opened.annotate(bucket=TruncHour("at"))
        .values("actor_id", "bucket")
        .annotate(n=Count("patient_id", distinct=True))
    ):
        per_hour[row["actor_id"]].append(row["n"])
    departments = dict(User.objects.filter(pk__in=list(hours)).values_list("pk", "department_id"))
    by_department: dict[int, list[int]] = defaultdict(list)
    for user_id, counts in per_hour.items():
        if departments.get(user_id):
            by_department[departments[user_id]].extend(counts)
    now = timezone.now()
    written = 0
    for user_id, hour_counts in hours.items():
        ActivityBaseline.objects.update_or_create(
            scope=ActivityBaseline.Scope.USER,
            scope_id=user_id,
            defaults={
                "usual_hours": sorted(rules.usual_hours(hour_counts)),
                "peak_patients_per_hour": _p95(per_hour[user_id]),
                "events": sum(hour_counts.values()),
                "computed_at": now,
            },
        )
        written += 1
    for department_id, counts in by_department.items():
        ActivityBaseline.objects.update_or_create(
            scope=ActivityBaseline.Scope.DEPARTMENT,
            scope_id=department_id,
            defaults={"peak_patients_per_hour": _p95(counts), "events": sum(counts), "computed_at": now},
        )
        written += 1
    return written
