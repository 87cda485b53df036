"""``manage.py scan_access``: set-based re-runs of the rules, idempotent, agreeing with the inline rules."""

from __future__ import annotations

import datetime
from io import StringIO
from typing import Any

import psycopg
import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import User
from accounts.signals import AuthEvent, auth_event
from audit import rules
from audit.chain import seal_and_insert
from audit.models import AccessEvent, ActivityBaseline, Alert, AlertSubject
from audit.sealing import seal_direct_changes
from records.models import BreakGlassGrant, Order
from records.selectors import patient_search
from records.services import order_place
from records.signals import break_glass_granted
from tests.audit.rule_helpers import on_ward, open_chart, subjects
from tests.factories import PatientFactory, assign

pytestmark = pytest.mark.django_db

DAY = datetime.datetime(2026, 12, 3, 9, 0, tzinfo=datetime.UTC)


def scan(*args: str) -> str:
    out = StringIO()
    call_command("scan_access", *args, "--no-progress", stdout=out, stderr=StringIO())
    return out.getvalue()


def misuse(nurse: User, physician: User, ems: User) -> None:
    """A morning of accesses with one of (almost) every kind of misuse, and legitimate twins."""
    nurse.last_name = "Okafor"
    nurse.save(update_fields=["last_name"])
    ActivityBaseline.objects.create(scope="user", scope_id=nurse.pk, usual_hours=list(range(7, 20)), events=500)
    with time_machine.travel(DAY, tick=True):
        relative = on_ward(nurse, family_name="Okafor")
        colleague = on_ward(nurse)
        colleague.staff_user = physician
        colleague.save(update_fields=["staff_user"])
        vip = on_ward(nurse, is_confidential=True)
        treated = on_ward(nurse, family_name="Okafor")
        assign(nurse, treated, "primary_nurse")
        famous = on_ward(nurse, family_name="Famous", birth_date=datetime.date(1960, 1, 1))
        for p in (relative, colleague, vip, treated):
            open_chart(nurse, p)
        patient_search(actor=nurse, family_name="Famous", birth_date=datetime.date(1960, 1, 1))
        open_chart(nurse, famous)
        many = [PatientFactory() for _ in range(rules.BULK_FLOOR + 3)]
        for p in many:
            assign(physician, p)
            open_chart(physician, p)
        for n in range(rules.LOCKOUT_STORM_COUNT):
            auth_event.send(sender=None, event=AuthEvent.LOCKOUT, username=f"u{n}", ip="10.0.0.9", detail={})
        grant = BreakGlassGrant.objects.create(
            user=ems,
            patient=vip,
            reason=BreakGlassGrant.Reason.EMERGENCY_TREATMENT,
            explanation="Collapsed",
            granted_at=timezone.now(),
            expires_at=timezone.now() + datetime.timedelta(hours=1),
        )
        break_glass_granted.send(sender=BreakGlassGrant, grant=grant, actor=ems)
    with time_machine.travel(DAY.replace(hour=2), tick=True):
        open_chart(nurse, on_ward(nurse))  # after hours


def test_scan_access_agrees_with_the_inline_rules_and_is_idempotent(nurse: User, physician: User, ems: User) -> None:
    misuse(nurse, physician, ems)
    inline = subjects()
    assert {rule for rule, _, _ in inline} == {
        "same_surname",
        "coworker",
        "confidential_patient",
        "search_then_open",
        "bulk_browsing",
        "lockout_storm",
        "break_glass",
        "after_hours",
    }
    Alert.objects.all().delete()
    out = scan("--since", "2026-12-01", "--until", "2026-12-04", "--no-baselines")
    assert subjects() == inline
    assert "new alert(s)" in out
    alerts = Alert.objects.count()
    scan("--since", "2026-12-01", "--until", "2026-12-04", "--no-baselines")
    assert Alert.objects.count() == alerts
    assert subjects() == inline


def test_scan_access_runs_one_rule(nurse: User, physician: User, ems: User) -> None:
    misuse(nurse, physician, ems)
    Alert.objects.all().delete()
    scan("--since", "2026-12-01", "--until", "2026-12-04", "--no-baselines", "--rule", "coworker")
    assert set(Alert.objects.values_list("rule", flat=True)) == {"coworker"}


def _historical(actor: User, patient_id: int, at: datetime.datetime, explanation: str = "order") -> None:
    seal_and_insert(
        [
            AccessEvent(
                at=at,
                actor_id=actor.pk,
                actor_username=actor.username,
                actor_role=actor.role,
                patient_id=patient_id,
                category=category,
                action="view",
                explanation=explanation,
            )
            for category in ("demographics", "imaging")
        ]
    )


def test_historical_events_are_judged_at_their_own_time(radiology: User, physician: User) -> None:
    patient = PatientFactory()
    assign(physician, patient)
    order = order_place(
        actor=physician,
        patient_id=patient.pk,
        kind=Order.Kind.RADIOLOGY,
        department=radiology.department,
        description="CT",
    )
    Order.objects.filter(pk=order.pk).update(
        ordered_at=DAY - datetime.timedelta(days=6),
        status=Order.Status.COMPLETED,
        completed_at=DAY - datetime.timedelta(days=4),
    )
    _historical(radiology, patient.pk, DAY - datetime.timedelta(days=5))  # order open then
    _historical(radiology, patient.pk, DAY - datetime.timedelta(days=3))  # order completed a day before
    scan("--since", "2026-11-20", "--until", "2026-12-04")
    (alert,) = Alert.objects.all()
    assert alert.rule == "order_without_open_order"
    assert alert.occurred_at == DAY - datetime.timedelta(days=3)
    assert alert.subjects.count() == 2  # both sections of the one access


def test_scan_queries_do_not_grow_with_the_number_of_events(physician: User) -> None:
    def run(n: int, day: datetime.datetime) -> int:
        for i in range(n):
            _historical(physician, PatientFactory().pk, day + datetime.timedelta(minutes=i), explanation="")
        with CaptureQueriesContext(connection) as queries:
            scan(
                "--since",
                day.isoformat(),
                "--until",
                (day + datetime.timedelta(hours=12)).isoformat(),
                "--no-baselines",
            )
        return len([q for q in queries if "audit_alert" not in q["sql"] and "SAVEPOINT" not in q["sql"]])

    assert run(30, DAY) == run(3, DAY - datetime.timedelta(days=1))
    assert Alert.objects.filter(rule="unexplained_view").count() == 33


def test_baselines_learn_usual_hours_and_the_busiest_hour(nurse: User) -> None:
    for day in range(10):
        for hour in (21, 22, 23, 1, 2, 3):
            _historical(nurse, 1000 + hour, DAY - datetime.timedelta(days=day + 1, hours=DAY.hour - hour % 24))
    scan("--since", "2026-12-02", "--until", "2026-12-04")
    baseline = ActivityBaseline.objects.get(scope="user", scope_id=nurse.pk)
    assert {22, 2}.issubset(baseline.usual_hours)
    assert 12 not in baseline.usual_hours
    assert baseline.peak_patients_per_hour == 1


def test_bad_dates_are_refused() -> None:
    from django.core.management import CommandError

    with pytest.raises(CommandError):
        scan("--since", "yesterday")
    with pytest.raises(CommandError):
        scan("--since", "2026-12-04", "--until", "2026-12-01")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="direct-change guards exist on PostgreSQL only")
@pytest.mark.django_db(transaction=True)
def test_direct_database_change_raises_a_critical_alert_once(physician: User) -> None:
    patient = PatientFactory()
    s: dict[str, Any] = connection.settings_dict
    with psycopg.connect(
        dbname=s["NAME"], user=s["USER"], host=s["HOST"] or None, port=s["PORT"] or None,
        password=s["PASSWORD"] or None, autocommit=True,
    ) as raw:  # fmt: skip
        raw.execute("UPDATE records_patient SET is_confidential = true WHERE id = %s", [patient.pk])
    seal_direct_changes()
    alert = Alert.objects.get(rule="direct_change")
    assert alert.severity == Alert.Severity.CRITICAL
    assert AlertSubject.objects.get(alert=alert).kind == "direct"
    scan("--since", "2026-01-01", "--rule", "direct_change")
    assert Alert.objects.filter(rule="direct_change").count() == 1


def _seen(actor: User, patient_id: int, at: datetime.datetime, explanation: str = "ward", **kw: Any) -> None:
    seal_and_insert(
        [
            AccessEvent(
                at=at,
                actor_id=actor.pk,
                actor_username=actor.username,
                actor_role=actor.role,
                patient_id=patient_id,
                category=kw.get("sections", ("demographics",))[0],
                sections=sorted(kw.get("sections", ("demographics",))),
                action=kw.get("action", "view"),
                explanation=explanation,
                detail=kw.get("detail", {}),
            )
        ]
    )


def test_the_candidate_filter_keeps_every_finding_and_leaves_routine_work_in_the_database(
    nurse: User, physician: User, radiology: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every rule's misuse and its legitimate twin, among routine ward work: the scan that reads only
    candidates finds exactly what a scan reading every event finds, and reads far fewer events."""
    from audit import detection

    nurse.last_name = "Okafor"
    nurse.save(update_fields=["last_name"])
    ActivityBaseline.objects.create(scope="user", scope_id=nurse.pk, usual_hours=list(range(7, 20)), events=500)
    day = DAY - datetime.timedelta(days=1)
    own = PatientFactory(address_line="12 Elm Road", postal_code="AB1 2CD")
    own.staff_user = nurse
    own.save(update_fields=["staff_user"])
    me = PatientFactory()
    me.staff_user = physician
    me.save(update_fields=["staff_user"])
    routine = [PatientFactory() for _ in range(12)]
    for n, p in enumerate(routine):  # a ward nurse's ordinary day: read by nobody but the count
        _seen(nurse, p.pk, day.replace(hour=8) + datetime.timedelta(minutes=5 * n))
        _seen(physician, p.pk, day.replace(hour=9) + datetime.timedelta(minutes=5 * n), "care_team")
    scenes = [
        (PatientFactory(family_name="Okafor"), day.replace(hour=10), "ward"),  # same surname
        (PatientFactory(address_line="12 elm road", postal_code="AB1 2CD"), day.replace(hour=10, minute=5), "ward"),
        (PatientFactory(deceased_date=datetime.date(2026, 1, 2)), day.replace(hour=10, minute=10), "ward"),
        (routine[0], day.replace(hour=2), "ward"),  # after hours
        (routine[1], day.replace(hour=11), ""),  # unexplained
        (PatientFactory(family_name="Okafor"), day.replace(hour=12), "care_team"),  # twin: on the care team
    ]
    for patient, at, explanation in scenes:
        _seen(nurse, patient.pk, at, explanation)
    # Search, then open within the window; the twin searched long before.
    for patient, gap in ((routine[2], 3), (routine[3], 40)):
        at = day.replace(hour=13) + datetime.timedelta(minutes=gap * 2)
        _seen(nurse, patient.pk, at, "", action="search_result", detail={"by": "name_dob"})
        _seen(nurse, patient.pk, at + datetime.timedelta(minutes=gap), "ward")
    _seen(physician, me.pk, day.replace(hour=14), "care_team")  # self-lookup
    # Radiology: one access with an order open at that moment, one after it was completed.
    assign(physician, routine[4])
    order = order_place(
        actor=physician, patient_id=routine[4].pk, kind=Order.Kind.RADIOLOGY, department=radiology.department,
        description="CT",
    )  # fmt: skip
    Order.objects.filter(pk=order.pk).update(
        ordered_at=day.replace(hour=6), status=Order.Status.COMPLETED, completed_at=day.replace(hour=12)
    )
    images = ("demographics", "imaging", "orders")
    _seen(radiology, routine[4].pk, day.replace(hour=11), "order", sections=images)
    _seen(radiology, routine[4].pk, day.replace(hour=15), "order", sections=images)
    # Its twin after the order was completed: a page that showed no images (the banner only).
    _seen(radiology, routine[4].pk, day.replace(hour=16), "order", sections=("demographics", "allergies"))

    since, until = day.replace(hour=0), day.replace(hour=23)
    filtered = detection.scan_accesses(since=since, until=until)
    found = subjects()
    assert {rule for rule, _, _ in found} == {
        "same_surname",
        "same_address",
        "deceased_patient",
        "after_hours",
        "unexplained_view",
        "search_then_open",
        "self_lookup",
        "order_without_open_order",
    }
    Alert.objects.all().delete()
    monkeypatch.setattr("audit.detection.prefilter.candidates", lambda *args: None)
    everything = detection.scan_accesses(since=since, until=until)
    assert subjects() == found
    assert dict(filtered.findings) == dict(everything.findings)
    assert filtered.candidates < everything.candidates - 2 * len(routine)
