"""How well the anomaly rules (audit/rules.py) separate snooping from work, and what they cost.

A simulated hospital, loaded in bulk through the project's own models: wards with day- and
night-shift nurses and day physicians, radiology, laboratory, an emergency service and a front desk;
patients with stays (encounters), attending and primary-nurse assignments, consults (a physician of
another ward on the care team), lab and radiology orders, registrations with name searches, and
legitimate emergencies under break-the-glass grants. Legitimate access with realistic noise: ward
nurses who are not the primary nurse opening their ward's patients ("ward"), night shifts,
overtime past the end of a shift, occasional shift swaps, colleagues, relatives and neighbours who
happen to be treated by staff (with a care relationship), surname coincidences.

Then misuse of every kind, with ground-truth labels: unexplained views, radiology without an order,
same surname, same address, coworker, self-lookup, VIP, deceased, after hours, bulk browsing, name
search then opening, repeated break-the-glass, a direct database change, a lockout storm.

It prints, per rule and overall: the explained rate of legitimate accesses, precision and recall
against the injected misuse, and alerts per 1,000 accesses; ``scan_access`` timing over all events
(use ``--days 600`` for about 1,000,000 events on PostgreSQL); and the inline cost: extra queries per
access and the chart view with rules on against rules off in the same run. It prints; it does not
assert.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/healthcrypt_bench .venv/bin/python -m bench.detection [--days 21]

Loading 600 days takes minutes; ``--keep`` leaves the bench database (``test_<name>``) in place with
the ground-truth labels in ``--state`` (a JSON file), and ``--scan-only`` then times the scan again
on it (alerts and baselines recomputed, nothing reloaded). Both skip the inline cost, whose chart
view would add events to the kept history; measure it with a plain run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import statistics
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "healthcrypt.settings_test")

import django

django.setup()

from django.conf import settings
from django.db import connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext, setup_test_environment

from accounts.models import Department, User
from accounts.roles import (
    ALL_CATEGORIES,
    LAB_CATEGORIES,
    RADIOLOGY_CATEGORIES,
    REGISTRATION_CATEGORIES,
    DataCategory,
    Role,
)
from audit import detection, rules
from audit.chain import seal_and_insert
from audit.facts import baselines_refresh
from audit.models import (
    AccessEvent,
    ActivityBaseline,
    Alert,
    AlertSubject,
    AuthEventRecord,
    DirectChangeSeal,
    RuleFailure,
)
from records.models import BreakGlassGrant, CareAssignment, Encounter, Order, Patient
from records.services import _set_indexes

RNG = random.Random(9)
START = datetime.datetime(2026, 9, 1, tzinfo=datetime.UTC)
BEDS_PER_WARD = 25
WARDS = 6
SURNAMES = [f"Surname{n:04d}" for n in range(4000)]


def _chart(categories: frozenset[DataCategory]) -> tuple[str, ...]:
    """A chart view's sections, the demographics (the banner) first as the primary one."""
    return ("demographics", *sorted(str(c) for c in categories if c != DataCategory.DEMOGRAPHICS))


# What a chart view by each role shows (accounts/roles.py), for the events the bench loads.
VIEW_SECTIONS: dict[str, tuple[str, ...]] = {
    Role.RADIOLOGY: _chart(RADIOLOGY_CATEGORIES),
    Role.LAB: _chart(LAB_CATEGORIES),
    Role.FRONT_DESK: _chart(REGISTRATION_CATEGORIES),
    Role.PHYSICIAN: _chart(ALL_CATEGORIES),
    Role.NURSE: _chart(ALL_CATEGORIES),
    Role.EMS: _chart(ALL_CATEGORIES),
}


@dataclass
class Hospital:
    wards: list[Department] = field(default_factory=list)
    radiology: Department | None = None
    lab: Department | None = None
    physicians: dict[int, list[User]] = field(default_factory=dict)  # ward id -> physicians
    day_nurses: dict[int, list[User]] = field(default_factory=dict)
    night_nurses: dict[int, list[User]] = field(default_factory=dict)
    radiologists: list[User] = field(default_factory=list)
    lab_staff: list[User] = field(default_factory=list)
    ems: list[User] = field(default_factory=list)
    front_desk: list[User] = field(default_factory=list)
    patients: list[Patient] = field(default_factory=list)


@dataclass
class Events:
    """Access events to load, and the labels of the misuse among them."""

    rows: list[AccessEvent] = field(default_factory=list)
    misuse: dict[int, str] = field(default_factory=dict)  # index in rows -> incident
    incidents: dict[str, str] = field(default_factory=dict)  # incident -> rule meant to catch it

    def add(self, actor: User, patient_id: int | None, at: datetime.datetime, explanation: str, **kw: Any) -> int:
        action = kw.get("action", "view")
        # One event per access listing the sections shown (audit/services.py): a chart view shows
        # what the role may see, a search or its result the demographics only.
        sections = kw.get("sections") or (
            VIEW_SECTIONS.get(actor.role, ("demographics",)) if action == "view" else ("demographics",)
        )
        self.rows.append(
            AccessEvent(
                at=at,
                actor_id=actor.pk,
                actor_username=actor.username,
                actor_role=actor.role,
                patient_id=patient_id,
                category=sections[0],
                sections=sorted(set(sections)),
                action=action,
                purpose="treatment",
                explanation=explanation,
                detail=kw.get("detail", {}),
            )
        )
        index = len(self.rows) - 1
        if "incident" in kw:
            self.misuse[index] = kw["incident"]
        return index

    def incident(self, name: str, rule: str) -> str:
        self.incidents[name] = rule
        return name


def _users(prefix: str, n: int, role: str, department: Department | None) -> list[User]:
    users = [
        User(
            username=f"{prefix}{i}",
            role=role,
            department=department,
            first_name="Staff",
            last_name=RNG.choice(SURNAMES),
            password="!",  # noqa: S106 (unusable)
        )
        for i in range(n)
    ]
    return User.objects.bulk_create(users)


def build(days: int) -> Hospital:
    h = Hospital()
    for w in range(WARDS):
        ward = Department.objects.create(code=f"sim-ward-{w}", name=f"Ward {w}", kind=Department.Kind.WARD)
        h.wards.append(ward)
        h.physicians[ward.pk] = _users(f"doc{w}_", 4, Role.PHYSICIAN, ward)
        h.day_nurses[ward.pk] = _users(f"dnurse{w}_", 6, Role.NURSE, ward)
        h.night_nurses[ward.pk] = _users(f"nnurse{w}_", 4, Role.NURSE, ward)
    h.radiology = Department.objects.create(code="sim-rad", name="Radiology", kind=Department.Kind.RADIOLOGY)
    h.lab = Department.objects.create(code="sim-lab", name="Laboratory", kind=Department.Kind.LAB)
    ed = Department.objects.create(code="sim-ed", name="Emergency", kind=Department.Kind.EMERGENCY)
    admin = Department.objects.create(code="sim-adm", name="Admissions", kind=Department.Kind.ADMINISTRATION)
    h.radiologists = _users("rad", 5, Role.RADIOLOGY, h.radiology)
    h.lab_staff = _users("lab", 5, Role.LAB, h.lab)
    h.ems = _users("ems", 6, Role.EMS, ed)
    h.front_desk = _users("desk", 4, Role.FRONT_DESK, admin)
    stays = WARDS * BEDS_PER_WARD * days // 4 + 200
    patients = []
    for i in range(max(600, stays // 2)):
        p = Patient(
            mrn=f"SIM{i:06d}",
            given_name="Given",
            family_name=RNG.choice(SURNAMES),
            birth_date=datetime.date(1940, 1, 1) + datetime.timedelta(days=RNG.randrange(25000)),
            sex="female",
            address_line=f"{RNG.randrange(1, 400)} Road {RNG.randrange(2000)}",
            postal_code=f"P{RNG.randrange(100):02d}",
        )
        _set_indexes(p)
        patients.append(p)
    h.patients = Patient.objects.bulk_create(patients, batch_size=2000)
    return h


def shift_time(day: datetime.datetime, night: bool) -> datetime.datetime:
    """A moment within a shift: days 07-19, nights 19-07, with a little overtime past the end."""
    minutes = RNG.randrange(12 * 60 + (45 if RNG.random() < 0.1 else 0))
    start = day.replace(hour=19 if night else 7)
    return start + datetime.timedelta(minutes=minutes)


def legitimate(h: Hospital, days: int, ev: Events, swap_rate: float) -> tuple[list[Any], list[Any], list[Any]]:
    """Stays with their care team, orders and the accesses of a normal day, night and emergency."""
    encounters, assignments, orders = [], [], []
    pool = list(h.patients)
    RNG.shuffle(pool)
    cursor = 0
    for ward in h.wards:
        for _bed in range(BEDS_PER_WARD):
            day = 0
            while day < days:
                patient = pool[cursor % len(pool)]
                cursor += 1
                los = RNG.randint(2, 7)
                admit = START + datetime.timedelta(days=day, hours=RNG.randrange(8, 18))
                discharge = admit + datetime.timedelta(days=los)
                attending = RNG.choice(h.physicians[ward.pk])
                primary = RNG.choice(h.day_nurses[ward.pk])
                encounters.append(
                    Encounter(
                        patient=patient,
                        kind=Encounter.Kind.INPATIENT,
                        status=Encounter.Status.FINISHED if day + los < days else Encounter.Status.IN_PROGRESS,
                        department=ward,
                        attending=attending,
                        starts_at=admit,
                        ends_at=discharge if day + los < days else None,
                    )
                )
                team = [(attending, "attending"), (primary, "primary_nurse")]
                consultant = None
                if RNG.random() < 0.15:  # a consult from another ward's physician
                    other = RNG.choice([w for w in h.wards if w.pk != ward.pk])
                    consultant = RNG.choice(h.physicians[other.pk])
                    team.append((consultant, "consultant"))
                for staff, role in team:
                    assignments.append(
                        CareAssignment(staff=staff, patient=patient, team_role=role, starts_at=admit, ends_at=discharge)
                    )
                desk = RNG.choice(h.front_desk)
                at = admit - datetime.timedelta(minutes=20)
                ev.add(desk, None, at, "", action="search", detail={"by": "name_dob", "results": 1})
                ev.add(desk, patient.pk, at, "", action="search_result", detail={"by": "name_dob"})
                ev.add(desk, patient.pk, at + datetime.timedelta(minutes=2), "registration")
                for kind, department, staff in (
                    (Order.Kind.RADIOLOGY, h.radiology, h.radiologists),
                    (Order.Kind.LAB, h.lab, h.lab_staff),
                ):
                    if RNG.random() < (0.35 if kind == Order.Kind.RADIOLOGY else 0.6):
                        ordered = admit + datetime.timedelta(hours=RNG.randrange(1, 20))
                        done = ordered + datetime.timedelta(hours=RNG.randrange(2, 20))
                        orders.append(
                            Order(
                                patient=patient,
                                kind=kind,
                                department=department,
                                ordered_by=attending,
                                status=Order.Status.COMPLETED,
                                description="Test",
                                ordered_at=ordered,
                                completed_at=done,
                            )
                        )
                        worker = RNG.choice(staff)
                        for _ in range(RNG.randint(1, 3)):
                            ev.add(worker, patient.pk, ordered + (done - ordered) * RNG.random(), "order")
                for d in range(los):
                    if day + d >= days:
                        break
                    today = START + datetime.timedelta(days=day + d)
                    for _ in range(RNG.randint(1, 3)):
                        ev.add(attending, patient.pk, shift_time(today, False), "care_team")
                    if consultant is not None and d == 1:
                        ev.add(consultant, patient.pk, shift_time(today, False), "care_team")
                    for _ in range(RNG.randint(2, 4)):
                        ev.add(primary, patient.pk, shift_time(today, False), "care_team")
                    # Ward rounds and cover: other nurses of the ward, day and night.
                    for night, crew in ((False, h.day_nurses[ward.pk]), (True, h.night_nurses[ward.pk])):
                        for nurse in RNG.sample(crew, 2):
                            # A swapped shift: the whole day's work at the other time.
                            swapped = random.Random(nurse.pk * 100_003 + day + d).random() < swap_rate
                            ev.add(nurse, patient.pk, shift_time(today, night != swapped), "ward")
                day += los
    # Legitimate emergencies: a paramedic breaks the glass a couple of times a week.
    grants = []
    for week in range(max(1, days // 7)):
        for _ in range(2):
            user = RNG.choice(h.ems)
            patient = RNG.choice(h.patients)
            at = START + datetime.timedelta(days=7 * week + RNG.randrange(7), hours=RNG.randrange(24))
            grants.append((user, patient, at, None))
            ev.add(user, patient.pk, at + datetime.timedelta(minutes=3), "break_glass")
    return encounters, assignments, orders + grants


def inject(h: Hospital, days: int, ev: Events, grants: list[Any]) -> dict[str, Any]:
    """Misuse of every kind, each an incident labelled with the rule meant to catch it."""
    last = START + datetime.timedelta(days=days - 1)
    extra: dict[str, Any] = {"own": [], "patients": [], "grants": [], "direct": 0, "auth": []}

    def some_day() -> datetime.datetime:
        return START + datetime.timedelta(days=RNG.randrange(7, days))

    def fresh_patient(**kw: Any) -> Patient:
        p = Patient(
            mrn=f"SIMX{len(extra['patients']):05d}",
            given_name="Given",
            family_name=kw.pop("family_name", RNG.choice(SURNAMES)),
            birth_date=datetime.date(1980, 1, 1),
            sex="male",
            address_line=kw.pop("address_line", f"{RNG.randrange(400, 800)} Lane"),
            postal_code=kw.pop("postal_code", "Q01"),
            **kw,
        )
        _set_indexes(p)
        p.save()
        extra["patients"].append(p)
        return p

    for n in range(60):
        ward = RNG.choice(h.wards)
        nurse = RNG.choice(h.day_nurses[ward.pk])
        doctor = RNG.choice(h.physicians[ward.pk])
        at = shift_time(some_day(), False)
        kind = n % 10
        if kind == 0:
            i = ev.incident(f"unexplained-{n}", "unexplained_view")
            ev.add(doctor, RNG.choice(h.patients).pk, at, "", incident=i)
        elif kind == 1:
            i = ev.incident(f"noorder-{n}", "order_without_open_order")
            ev.add(RNG.choice(h.radiologists), RNG.choice(h.patients).pk, at, "order", incident=i)
        elif kind == 2:
            i = ev.incident(f"surname-{n}", "same_surname")
            ev.add(nurse, fresh_patient(family_name=nurse.last_name).pk, at, "ward", incident=i)
        elif kind == 3:
            if Patient.objects.filter(staff_user=nurse).exists():
                continue
            own = fresh_patient(staff_user=nurse, address_line=f"{n} Shared Street", postal_code="S01")
            i = ev.incident(f"address-{n}", "same_address")
            ev.add(
                nurse, fresh_patient(address_line=f"{n} Shared Street", postal_code="S01").pk, at, "ward", incident=i
            )
            extra["own"].append(own)
        elif kind == 4:
            colleague = RNG.choice(h.physicians[RNG.choice(h.wards).pk])
            if Patient.objects.filter(staff_user=colleague).exists():
                continue
            i = ev.incident(f"coworker-{n}", "coworker")
            ev.add(nurse, fresh_patient(staff_user=colleague).pk, at, "ward", incident=i)
        elif kind == 5:
            if Patient.objects.filter(staff_user=doctor).exists():
                continue
            i = ev.incident(f"self-{n}", "self_lookup")
            ev.add(doctor, fresh_patient(staff_user=doctor).pk, at, "care_team", incident=i)
        elif kind == 6:
            i = ev.incident(f"vip-{n}", "confidential_patient")
            ev.add(nurse, fresh_patient(is_confidential=True).pk, at, "ward", incident=i)
        elif kind == 7:
            i = ev.incident(f"deceased-{n}", "deceased_patient")
            ev.add(nurse, fresh_patient(deceased_date=datetime.date(2026, 8, 1)).pk, at, "ward", incident=i)
        elif kind == 8:
            i = ev.incident(f"afterhours-{n}", "after_hours")
            night = some_day().replace(hour=2, minute=RNG.randrange(60))
            ev.add(nurse, RNG.choice(h.patients).pk, night, "ward", incident=i)
        elif kind == 9:
            i = ev.incident(f"search-{n}", "search_then_open")
            target = RNG.choice(h.patients)
            ev.add(nurse, None, at, "", action="search", detail={"by": "name_dob", "results": 1})
            ev.add(nurse, target.pk, at, "", action="search_result", detail={"by": "name_dob"})
            ev.add(nurse, target.pk, at + datetime.timedelta(minutes=3), "ward", incident=i)
    for n in range(3):  # bulk browsing: sixty distinct patients within the hour
        doctor = RNG.choice(h.physicians[RNG.choice(h.wards).pk])
        i = ev.incident(f"bulk-{n}", "bulk_browsing")
        at = some_day().replace(hour=10, minute=0)
        for k, p in enumerate(RNG.sample(h.patients, 60)):
            ev.add(doctor, p.pk, at + datetime.timedelta(seconds=50 * k), "care_team", incident=i)
    for n in range(2):  # one paramedic breaking the glass again and again
        user = h.ems[n]
        base = some_day()
        for k in range(rules.REPEATED_BREAK_GLASS_COUNT):
            grants.append((user, RNG.choice(h.patients), base + datetime.timedelta(hours=20 * k + 1), f"bg-{n}"))
        ev.incident(f"bg-{n}", "repeated_break_glass")
    ev.incident("direct-0", "direct_change")
    extra["direct"] = last
    ev.incident("storm-0", "lockout_storm")
    extra["auth"] = [last.replace(hour=4) + datetime.timedelta(minutes=m) for m in range(0, 12, 2)]
    return extra


def load(
    h: Hospital, ev: Events, encounters: list[Any], assignments: list[Any], grants: list[Any], extra: dict[str, Any]
) -> dict[str, Any]:
    """Everything into the database in bulk: the clinical rows, the grants, then the events in time order."""
    Encounter.objects.bulk_create(encounters, batch_size=2000)
    CareAssignment.objects.bulk_create(assignments, batch_size=5000)
    orders = [o for o in grants if isinstance(o, Order)]
    Order.objects.bulk_create(orders, batch_size=2000)
    labels: dict[str, Any] = {"grants": {}, "events": {}, "direct": set(), "auth": set()}
    for user, patient, at, incident in (g for g in grants if isinstance(g, tuple)):
        grant = BreakGlassGrant.objects.create(
            user=user,
            patient=patient,
            reason=BreakGlassGrant.Reason.EMERGENCY_TREATMENT,
            explanation="Simulated",
            granted_at=at,
            expires_at=at + datetime.timedelta(hours=1),
        )
        if incident:
            labels["grants"][grant.pk] = incident
    order = sorted(range(len(ev.rows)), key=lambda i: ev.rows[i].at)
    batch = 10_000
    for start in range(0, len(order), batch):
        chunk = [ev.rows[i] for i in order[start : start + batch]]
        created = seal_and_insert(chunk)
        for i, row in zip(order[start : start + batch], created, strict=True):
            if i in ev.misuse:
                labels["events"][row.pk] = ev.misuse[i]
    seal = DirectChangeSeal(
        direct_change_id=1,
        change_at=extra["direct"],
        table_name="records_patient",
        operation="UPDATE",
        row_id=h.patients[0].pk,
        db_user="intruder",
        verified=False,
    )
    (seal,) = seal_and_insert([seal], partition=0)
    labels["direct"].add(seal.pk)
    for k, at in enumerate(extra["auth"]):
        (record,) = seal_and_insert([AuthEventRecord(at=at, event="lockout", username=f"victim{k}", detail={})])
        labels["auth"].add(record.pk)
    # Background noise: a forgotten password now and then.
    for d in range(0, 21):
        seal_and_insert([AuthEventRecord(at=START + datetime.timedelta(days=d, hours=9), event="lockout", detail={})])
    return labels


def measure(labels: dict[str, Any], incidents: dict[str, str], total_events: int) -> None:
    subject_of: dict[tuple[str, int], str] = {}
    for pk, incident in labels["events"].items():
        subject_of[("access", pk)] = incident
    for pk, incident in labels["grants"].items():
        subject_of[("grant", pk)] = incident
    for pk in labels["direct"]:
        subject_of[("direct", pk)] = "direct-0"
    for pk in labels["auth"]:
        subject_of[("auth", pk)] = "storm-0"
    per_rule: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # alerts, true
    caught: dict[str, set[str]] = defaultdict(set)  # incident -> rules that fired on it
    for alert in Alert.objects.prefetch_related("subjects"):
        hits = {subject_of.get((s.kind, s.object_id)) for s in alert.subjects.all()} - {None}
        per_rule[alert.rule][0] += 1
        if hits:
            per_rule[alert.rule][1] += 1
        for incident in hits:
            caught[incident].add(alert.rule)  # type: ignore[index]
    legit = AccessEvent.objects.exclude(pk__in=list(labels["events"])).filter(action__in=rules.OPEN_ACTIONS)
    explained = legit.exclude(explanation="").count()
    print(f"\nexplained rate of legitimate accesses: {explained / max(1, legit.count()):.2%} (target >= 95%)")
    print(f"{'rule':<26}{'alerts':>8}{'true':>6}{'precision':>11}{'incidents':>11}{'recall':>8}{'per 1,000':>11}")
    all_alerts = all_true = 0
    for rule in rules.ALL_RULES:
        alerts, true = per_rule[rule]
        mine = [i for i, r in incidents.items() if r == rule]
        found = sum(1 for i in mine if rule in caught[i])
        precision = f"{true / alerts:.2f}" if alerts else "-"
        recall = f"{found / len(mine):.2f}" if mine else "-"
        print(
            f"{rule:<26}{alerts:>8}{true:>6}{precision:>11}{len(mine):>11}{recall:>8}{1000 * alerts / total_events:>11.2f}"
        )
        if rule != "break_glass":  # every grant is reviewed by design; not a detection
            all_alerts += alerts
            all_true += true
    detected = sum(1 for i in incidents if caught[i])
    print(
        f"{'overall (without break_glass)':<26}{all_alerts:>8}{all_true:>6}{all_true / max(1, all_alerts):>11.2f}"
        f"{len(incidents):>11}{detected / len(incidents):>8.2f}{1000 * all_alerts / total_events:>11.2f}"
    )
    print("targets: recall >= 0.95, precision >= 0.8")


def inline_cost(requests: int) -> None:
    """Chart views with the rules on against off, interleaved, each round in an hour of its own.

    The rules read the actor's events of the current hour (bulk browsing, search then open). A
    clinician opens a few dozen charts an hour; repeating one view hundreds of times within the same
    hour would grow that read far beyond any real shift, so every round starts an hour later (and
    signs in again, as the step-up would have expired).
    """
    import time_machine

    from bench.chart_view import build as build_chart
    from tests.conftest import sign_in

    doctor, patient_id, _ = build_chart(200, 20)
    url = f"/patients/{patient_id}/"
    base = datetime.datetime.now(tz=datetime.UTC).replace(minute=0, second=0, microsecond=0)
    rounds = iter(range(1, 10_000))

    def median_ms(on: bool) -> float:
        settings.ANOMALY_RULES_INLINE = on
        with time_machine.travel(base + datetime.timedelta(hours=next(rounds)), tick=True):
            client = sign_in(Client(), doctor)
            for _ in range(3):
                client.get(url)
            samples = []
            for _ in range(requests):
                start = time.perf_counter()
                assert client.get(url).status_code == 200
                samples.append(time.perf_counter() - start)
        return statistics.median(samples) * 1000

    def queries(on: bool) -> int:
        settings.ANOMALY_RULES_INLINE = on
        client = sign_in(Client(), doctor)
        client.get(url)
        with CaptureQueriesContext(connection) as captured:
            client.get(url)
        return len(captured)

    q_on, q_off = queries(True), queries(False)
    on, off = [], []
    for n in range(5):
        # Alternate which goes first, so that warming and drift fall on both sides.
        for flag in (True, False) if n % 2 == 0 else (False, True):
            (on if flag else off).append(median_ms(flag))
    settings.ANOMALY_RULES_INLINE = True
    print(
        f"\ninline cost ({connection.vendor}): {q_on - q_off} extra queries per access ({q_off} -> {q_on}); chart view "
        f"rules on {statistics.median(on):.2f} ms, off {statistics.median(off):.2f} ms, "
        f"ratio {statistics.median(on) / statistics.median(off):.2f}x (target <= 1.1x)"
    )


def scan_and_measure(days: int, labels: dict[str, Any], incidents: dict[str, str], total: int) -> None:
    end = START + datetime.timedelta(days=days + 1)
    t0 = time.perf_counter()
    baselines_refresh(until=end)
    t1 = time.perf_counter()
    outcome = detection.scan(since=START, until=end)
    t2 = time.perf_counter()
    print(
        f"scan_access over {total:,} events: {t2 - t1:.1f} s (+ baselines {t1 - t0:.1f} s), "
        f"{outcome.judged:,} accesses judged, {outcome.candidates:,} candidate events read, "
        f"{len(outcome.raised)} alerts, {outcome.failures} rule failures"
    )
    again = detection.scan(since=START, until=end)
    print(f"second scan: {len(again.raised)} new alerts (idempotent: 0), {AlertSubject.objects.count()} subjects")
    measure(labels, incidents, total)


def _state_save(path: str, days: int, labels: dict[str, Any], incidents: dict[str, str], total: int) -> None:
    plain = {key: sorted(value) if isinstance(value, set) else value for key, value in labels.items()}
    with open(path, "w") as out:
        json.dump({"days": days, "labels": plain, "incidents": incidents, "total": total}, out)


def _state_load(path: str) -> tuple[int, dict[str, Any], dict[str, str], int]:
    with open(path) as source:
        state = json.load(source)
    labels = state["labels"]
    labels["grants"] = {int(k): v for k, v in labels["grants"].items()}
    labels["events"] = {int(k): v for k, v in labels["events"].items()}
    labels["direct"], labels["auth"] = set(labels["direct"]), set(labels["auth"])
    return state["days"], labels, state["incidents"], state["total"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=21, help="days of simulated activity (600: about 1,000,000 events)")
    parser.add_argument(
        "--swap-rate", type=float, default=0.002, help="share of nurse shifts (whole days) worked at the other time"
    )
    parser.add_argument("--requests", type=int, default=30, help="chart views per median for the inline cost")
    parser.add_argument("--keep", action="store_true", help="keep the loaded database and its labels (see --state)")
    parser.add_argument("--scan-only", action="store_true", help="scan the database kept by --keep again")
    parser.add_argument("--inline-only", action="store_true", help="only the inline cost (no simulated hospital)")
    parser.add_argument(
        "--state", default="", help="labels of a kept database (default: <tmp>/bench-detection-<db>.json)"
    )
    args = parser.parse_args()
    setup_test_environment()
    settings.ANOMALY_RULES_INLINE = False  # the history is loaded in bulk; scan_access judges it
    original = connection.settings_dict["NAME"]
    state = args.state or os.path.join(tempfile.gettempdir(), f"bench-detection-{os.path.basename(str(original))}.json")
    keep = args.keep or args.scan_only
    connection.creation.create_test_db(verbosity=0, serialize=False, keepdb=args.scan_only)
    try:
        if args.inline_only:
            inline_cost(args.requests)
            return
        if args.scan_only:
            days, labels, incidents, total = _state_load(state)
            AlertSubject.objects.all().delete()
            Alert.objects.all().delete()
            RuleFailure.objects.all().delete()
            ActivityBaseline.objects.all().delete()
            print(f"kept database: {days} days, {total:,} access events ({connection.vendor})")
            scan_and_measure(days, labels, incidents, total)
            return
        started = time.perf_counter()
        h = build(args.days)
        ev = Events()
        encounters, assignments, rest = legitimate(h, args.days, ev, args.swap_rate)
        extra = inject(h, args.days, ev, rest)
        labels = load(h, ev, encounters, assignments, rest, extra)
        if connection.vendor == "postgresql":
            # Statistics for the planner, as autovacuum would gather them after a bulk load.
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        total = AccessEvent.objects.count()
        print(
            f"simulated {args.days} days, {len(h.patients):,} patients, {User.objects.count()} staff: "
            f"{total:,} access events ({len(labels['events'])} misuse), {len(ev.incidents)} incidents; "
            f"loaded in {time.perf_counter() - started:.0f} s ({connection.vendor})"
        )
        if keep:
            _state_save(state, args.days, labels, ev.incidents, total)
            print(f"kept: {connection.settings_dict['NAME']}, labels in {state}")
        scan_and_measure(args.days, labels, ev.incidents, total)
        if not keep:
            inline_cost(args.requests)
    finally:
        connections.close_all()
        if not keep:
            connection.creation.destroy_test_db(original, verbosity=0)


if __name__ == "__main__":
    main()
