"""Anomaly rules (audit/rules.py), inline: each fires on the misuse and stays quiet on its legitimate twin."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from accounts.signals import AuthEvent, auth_event
from audit import rules
from audit.alerts import alert_raise
from audit.models import AccessEvent, ActivityBaseline, Alert, AlertSubject, RuleFailure
from records.models import BreakGlassGrant, Order
from records.selectors import chart_for, patient_search
from records.services import order_place
from records.signals import break_glass_granted, patient_data_accessed
from tests.audit.rule_helpers import on_ward, open_chart, rules_raised
from tests.factories import PatientFactory, assign

pytestmark = pytest.mark.django_db


def test_same_surname_on_the_ward_alerts_and_the_care_team_twin_does_not(nurse: User) -> None:
    nurse.last_name = "Okafor"
    nurse.save(update_fields=["last_name"])
    relative = on_ward(nurse, family_name="OKAFOR ")  # blind index normalises case and spaces
    open_chart(nurse, relative)
    assert rules_raised(relative) == ["same_surname"]
    alert = Alert.objects.get()
    assert alert.severity == Alert.Severity.HIGH
    assert "Okafor" not in alert.reason
    assert str(relative.pk) not in alert.reason

    treated = on_ward(nurse, family_name="Okafor")
    assign(nurse, treated, "primary_nurse")
    open_chart(nurse, treated)
    assert rules_raised(treated) == []


def test_same_address_compares_blind_indexes_of_the_staff_members_own_record(nurse: User) -> None:
    own = PatientFactory(address_line="12 Elm Road", postal_code="AB1 2CD")
    own.staff_user = nurse
    own.save(update_fields=["staff_user"])
    neighbour = on_ward(nurse, address_line="12 elm road", postal_code="AB1 2CD")
    stranger = on_ward(nurse, address_line="14 Elm Road", postal_code="AB1 2CD")
    open_chart(nurse, neighbour)
    open_chart(nurse, stranger)
    assert rules_raised(neighbour) == ["same_address"]
    assert rules_raised(stranger) == []


def test_coworker_alerts_without_a_care_relationship(nurse: User, physician: User) -> None:
    colleague = on_ward(nurse)
    colleague.staff_user = physician
    colleague.save(update_fields=["staff_user"])
    open_chart(nurse, colleague)
    assert rules_raised(colleague) == ["coworker"]
    Alert.objects.all().delete()
    assign(nurse, colleague, "primary_nurse")
    open_chart(nurse, colleague)
    assert rules_raised(colleague) == []


def test_self_lookup_through_the_clinical_path(nurse: User) -> None:
    me = on_ward(nurse)
    me.staff_user = nurse
    me.save(update_fields=["staff_user"])
    open_chart(nurse, me)
    assert rules_raised(me) == ["self_lookup"]


def test_self_lookup_rule_is_quiet_for_the_portal_and_for_other_staff() -> None:
    facts = _facts(patient=rules.PatientFacts(staff_user_id=7))
    assert rules.self_lookup(_access(actor_id=7, explanation="own_record", role="patient"), facts) is None
    assert rules.self_lookup(_access(actor_id=8), facts) is None
    assert rules.self_lookup(_access(actor_id=7), facts) is not None


@pytest.mark.parametrize(
    ("flag", "rule"), [("is_confidential", "confidential_patient"), ("deceased_date", "deceased_patient")]
)
def test_vip_and_deceased_patients_alert_on_ward_access_not_for_the_care_team(
    nurse: User, flag: str, rule: str
) -> None:
    value: Any = True if flag == "is_confidential" else datetime.date(2026, 1, 2)
    patient = on_ward(nurse)
    setattr(patient, flag, value)
    patient.save(update_fields=[flag])
    open_chart(nurse, patient)
    assert rules_raised(patient) == [rule]
    Alert.objects.all().delete()
    assign(nurse, patient, "primary_nurse")
    open_chart(nurse, patient)
    assert rules_raised(patient) == []


def _signal_access(
    actor: User,
    patient_id: int,
    explanation: str,
    action: str = "view",
    sections: tuple[str, ...] = ("demographics", "notes"),
) -> None:
    patient_data_accessed.send(
        sender=None,
        actor=actor,
        patient_id=patient_id,
        patient_ids=(patient_id,),
        category=sections[0],
        categories=sections,
        action=action,
        purpose="treatment",
        explanation=explanation,
    )


def test_unexplained_view_alerts_once_per_access_naming_all_its_events(physician: User) -> None:
    patient = PatientFactory()
    _signal_access(physician, patient.pk, "")
    alert = Alert.objects.get()
    assert alert.rule == "unexplained_view"
    (event,) = AccessEvent.objects.filter(patient_id=patient.pk)
    assert event.sections == ["demographics", "notes"]
    assert list(alert.subjects.values_list("object_id", flat=True)) == [event.pk]
    _signal_access(physician, patient.pk, "care_team")
    assert Alert.objects.count() == 1


def test_lists_and_searches_are_not_judged_as_openings(physician: User) -> None:
    patient = PatientFactory()
    _signal_access(physician, patient.pk, "", action="list")
    assert Alert.objects.count() == 0


def test_radiology_without_an_open_order_for_its_department(radiology: User, physician: User) -> None:
    patient = PatientFactory()
    _signal_access(radiology, patient.pk, "order", sections=("demographics", "imaging", "orders"))
    assert rules_raised(patient) == ["order_without_open_order"]
    ordered = PatientFactory()
    assign(physician, ordered)
    order_place(
        actor=physician,
        patient_id=ordered.pk,
        kind=Order.Kind.RADIOLOGY,
        department=radiology.department,
        description="CT",
    )
    chart_for(actor=radiology, patient_id=ordered.pk)
    assert rules_raised(ordered) == []


def test_radiology_without_an_order_is_judged_on_the_imaging_section_whatever_the_primary_one(
    radiology: User,
) -> None:
    # Imaging is neither first nor primary here: the rule reads the sections, not the category.
    patient = PatientFactory()
    _signal_access(radiology, patient.pk, "order", sections=("allergies", "demographics", "imaging"))
    assert rules_raised(patient) == ["order_without_open_order"]


def test_radiology_view_without_imaging_is_not_an_order_finding(radiology: User) -> None:
    # The banner of a page (demographics, allergies) shows none of radiology's work.
    patient = PatientFactory()
    _signal_access(radiology, patient.pk, "order", sections=("demographics", "allergies"))
    assert rules_raised(patient) == []


def test_lab_without_an_order_is_judged_on_the_results_section(lab: User) -> None:
    shown, banner = PatientFactory(), PatientFactory()
    _signal_access(lab, shown.pk, "order", sections=("demographics", "observations"))
    _signal_access(lab, banner.pk, "order", sections=("demographics", "allergies"))
    assert rules_raised(shown) == ["order_without_open_order"]
    assert rules_raised(banner) == []


def _baseline(user: User, hours: range) -> None:
    ActivityBaseline.objects.create(
        scope=ActivityBaseline.Scope.USER,
        scope_id=user.pk,
        usual_hours=list(hours),
        events=500,
        peak_patients_per_hour=5,
    )


def test_after_hours_against_the_users_own_hours(nurse: User) -> None:
    _baseline(nurse, range(7, 20))
    with time_machine.travel(datetime.datetime(2026, 12, 3, 3, 10, tzinfo=datetime.UTC)):
        night = on_ward(nurse)
        open_chart(nurse, night)
    with time_machine.travel(datetime.datetime(2026, 12, 3, 10, 10, tzinfo=datetime.UTC)):
        day = on_ward(nurse)
        open_chart(nurse, day)
    assert rules_raised(night) == ["after_hours"]
    assert rules_raised(day) == []


def test_night_shift_is_usual_for_a_night_nurse(nurse: User) -> None:
    _baseline(nurse, [*range(19, 24), *range(0, 8)])
    with time_machine.travel(datetime.datetime(2026, 12, 3, 3, 10, tzinfo=datetime.UTC)):
        patient = on_ward(nurse)
        open_chart(nurse, patient)
    assert rules_raised(patient) == []


def test_after_hours_says_nothing_without_enough_history(nurse: User) -> None:
    ActivityBaseline.objects.create(
        scope="user", scope_id=nurse.pk, usual_hours=[9], events=rules.MIN_BASELINE_EVENTS - 1
    )
    with time_machine.travel(datetime.datetime(2026, 12, 3, 3, 10, tzinfo=datetime.UTC)):
        patient = on_ward(nurse)
        open_chart(nurse, patient)
    assert rules_raised(patient) == []


@pytest.mark.parametrize(("count", "alerts"), [(rules.BULK_FLOOR, 0), (rules.BULK_FLOOR + 5, 1)])
def test_bulk_browsing_alerts_once_at_the_crossing(physician: User, count: int, alerts: int) -> None:
    patients = [PatientFactory() for _ in range(count)]
    with time_machine.travel(datetime.datetime(2026, 12, 3, 10, 0, tzinfo=datetime.UTC), tick=True):
        for p in patients:
            _signal_access(physician, p.pk, "care_team")
            _signal_access(physician, p.pk, "care_team")  # re-opening the same patient counts once
    assert Alert.objects.filter(rule="bulk_browsing").count() == alerts
    if alerts:
        assert Alert.objects.get().patient_id == patients[rules.BULK_FLOOR].pk


def test_bulk_limit_follows_the_users_and_the_departments_baseline() -> None:
    assert rules.bulk_limit(None, None) == rules.BULK_FLOOR
    assert rules.bulk_limit(rules.Baseline(peak_patients_per_hour=40), None) == 80
    assert rules.bulk_limit(rules.Baseline(peak_patients_per_hour=5), rules.Baseline(peak_patients_per_hour=25)) == 50


def test_search_by_name_then_opening_without_a_care_relationship(nurse: User) -> None:
    target = on_ward(nurse, family_name="Celebrity", birth_date=datetime.date(1970, 5, 5))
    patient_search(actor=nurse, family_name="Celebrity", birth_date=datetime.date(1970, 5, 5))
    open_chart(nurse, target)
    assert rules_raised(target) == ["search_then_open"]


def test_search_then_opening_a_patient_in_care_is_quiet(nurse: User) -> None:
    target = on_ward(nurse, family_name="Known", birth_date=datetime.date(1970, 5, 5))
    assign(nurse, target, "primary_nurse")
    patient_search(actor=nurse, family_name="Known", birth_date=datetime.date(1970, 5, 5))
    open_chart(nurse, target)
    assert rules_raised(target) == []


def test_search_long_before_the_opening_is_quiet(nurse: User) -> None:
    target = on_ward(nurse, family_name="Later", birth_date=datetime.date(1970, 5, 5))
    with time_machine.travel(timezone.now() - rules.SEARCH_OPEN_WINDOW - datetime.timedelta(minutes=1)):
        patient_search(actor=nurse, family_name="Later", birth_date=datetime.date(1970, 5, 5))
    open_chart(nurse, target)
    assert rules_raised(target) == []


def _grant(user: User, patient: Any, at: datetime.datetime) -> BreakGlassGrant:
    grant = BreakGlassGrant.objects.create(
        user=user,
        patient=patient,
        reason=BreakGlassGrant.Reason.EMERGENCY_TREATMENT,
        explanation="Unconscious at the scene",
        granted_at=at,
        expires_at=at + datetime.timedelta(hours=1),
    )
    break_glass_granted.send(sender=BreakGlassGrant, grant=grant, actor=user)
    return grant


def test_every_grant_alerts_and_a_second_within_a_day_is_high(ems: User) -> None:
    now = timezone.now()
    first = _grant(ems, PatientFactory(), now - datetime.timedelta(hours=30))
    second = _grant(ems, PatientFactory(), now - datetime.timedelta(hours=5))
    third = _grant(ems, PatientFactory(), now - datetime.timedelta(hours=1))
    severities = dict(Alert.objects.filter(rule="break_glass").values_list("patient_id", "severity"))
    assert severities[first.patient_id] == Alert.Severity.MEDIUM
    assert severities[second.patient_id] == Alert.Severity.MEDIUM  # 25 hours after the first
    assert severities[third.patient_id] == Alert.Severity.HIGH
    assert not Alert.objects.filter(rule="repeated_break_glass").exists()
    fourth = _grant(ems, PatientFactory(), now)
    assert list(Alert.objects.filter(rule="repeated_break_glass").values_list("patient_id", flat=True)) == [
        fourth.patient_id
    ]
    fifth = _grant(ems, PatientFactory(), now + datetime.timedelta(minutes=5))
    repeated = Alert.objects.get(rule="repeated_break_glass")  # the fifth joins the open case
    assert set(repeated.subjects.values_list("object_id", flat=True)) == {fourth.pk, fifth.pk}


def test_grant_for_a_confidential_patient_is_high(ems: User) -> None:
    _grant(ems, PatientFactory(is_confidential=True), timezone.now())
    alert = Alert.objects.get(rule="break_glass")
    assert alert.severity == Alert.Severity.HIGH
    assert "VIP" in alert.reason


@pytest.mark.parametrize(
    ("lockouts", "alerts"), [(rules.LOCKOUT_STORM_COUNT - 1, 0), (rules.LOCKOUT_STORM_COUNT + 2, 1)]
)
def test_lockout_storm(lockouts: int, alerts: int) -> None:
    with time_machine.travel(datetime.datetime(2026, 12, 3, 10, 1, tzinfo=datetime.UTC), tick=True):
        for n in range(lockouts):
            auth_event.send(sender=None, event=AuthEvent.LOCKOUT, username=f"user{n}", ip="10.0.0.1", detail={})
    assert Alert.objects.filter(rule="lockout_storm").count() == alerts


def test_refused_partner_token_requests_count_towards_the_failed_sign_in_storm() -> None:
    # A flood of forged client assertions is a failed sign-in storm like a flood of wrong passwords.
    with time_machine.travel(datetime.datetime(2026, 12, 3, 10, 1, tzinfo=datetime.UTC), tick=True):
        for n in range(rules.FAILED_STORM_COUNT - 1):
            event = AuthEvent.LOGIN_FAILED if n % 2 else AuthEvent.PARTNER_TOKEN_REFUSED
            auth_event.send(sender=None, event=event, username="partner:unknown", ip="10.0.0.9", detail={})
        assert not Alert.objects.filter(rule="lockout_storm").exists()
        auth_event.send(
            sender=None, event=AuthEvent.PARTNER_TOKEN_REFUSED, username="partner:unknown", ip="10.0.0.9", detail={}
        )
    (alert,) = Alert.objects.filter(rule="lockout_storm")
    assert "partners" in alert.reason


def test_alert_raise_is_idempotent_per_event_and_rule() -> None:
    finding = rules.Finding("unexplained_view", 2, "x")
    now = timezone.now()
    assert alert_raise(finding=finding, kind="access", object_ids=[1, 2], occurred_at=now) is not None
    assert alert_raise(finding=finding, kind="access", object_ids=[1, 2], occurred_at=now) is None
    other = rules.Finding("after_hours", 2, "y")
    assert alert_raise(finding=other, kind="access", object_ids=[1], occurred_at=now) is not None
    assert AlertSubject.objects.count() == 3


def test_a_failing_rule_is_recorded_and_the_chart_is_still_shown(
    nurse: User, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(access: Any, facts: Any) -> None:
        raise ValueError("Treatedsurname")  # a message that quotes data must not be kept

    monkeypatch.setattr(rules, "ACCESS_RULES", (rules.Rule("same_surname", 3, broken), *rules.ACCESS_RULES[1:]))
    patient = on_ward(nurse, family_name="Treatedsurname")
    chart = open_chart(nurse, patient)
    assert chart.patient.id == patient.pk
    failure = RuleFailure.objects.get()
    assert (failure.rule, failure.kind, failure.error) == ("same_surname", "access", "ValueError")
    assert "Treatedsurname" not in caplog.text


def test_failing_fact_gathering_is_recorded_and_the_chart_is_still_shown(
    nurse: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audit import facts

    def broken(*args: Any) -> None:
        raise RuntimeError

    monkeypatch.setattr(facts, "sections_read", broken)  # the one query that gathers the facts
    patient = on_ward(nurse)
    assert open_chart(nurse, patient).patient.id == patient.pk
    assert RuleFailure.objects.get().rule == "facts"


def test_the_policys_row_carries_the_patients_facts_without_a_query_or_a_decryption(
    django_assert_num_queries: Callable[..., Any],
) -> None:
    """The chart passes the patient's row the policy read (sealed) to the rules: its facts come from it,
    with no query, and the encrypted death date is only tested for being set, never opened."""
    from audit.facts import carried_patient_facts
    from healthcrypt.fields import Sealed
    from records.models import Patient

    patient = PatientFactory(is_confidential=True)
    row = Patient.objects.get(pk=patient.pk)
    # A token nobody can open: reading it would raise.
    row.__dict__["deceased_date"] = Sealed("hc2:unopenable", Patient._meta.get_field("deceased_date"))  # type: ignore[arg-type]
    with django_assert_num_queries(0):
        found = carried_patient_facts([row])[patient.pk]
    assert (found.deceased, found.confidential, found.surname_index) == (True, True, row.family_name_index)
    # A row loaded without those columns is left out: its facts are then read from the database.
    assert carried_patient_facts([Patient.objects.only("id").get(pk=patient.pk)]) == {}


def test_rules_add_a_bounded_number_of_queries_to_the_chart_view(
    nurse: User,
    client_for: Callable[[User], Client],
    django_assert_max_num_queries: Callable[..., Any],
    settings: Any,
) -> None:
    patient = on_ward(nurse)
    client = client_for(nurse)
    url = reverse("records:chart", args=[patient.pk])
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries(rules_on: bool) -> int:
        settings.ANOMALY_RULES_INLINE = rules_on
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured)

    client.get(url)
    off = min(queries(False) for _ in range(2))
    on = min(queries(True) for _ in range(2))
    # One query (the own record, baselines, the actor's last hour; the patient's facts come with the
    # policy's row; a radiology/lab user's orders in the same query), inside a savepoint (two statements).
    assert on - off <= 3
    with django_assert_max_num_queries(off + 3):
        client.get(url)


def test_high_severity_alert_mails_the_security_team_without_patient_data(
    nurse: User, security: User, django_capture_on_commit_callbacks: Any
) -> None:
    security.email = "soc@hospital.example"
    security.save(update_fields=["email"])
    nurse.last_name = "Mbeki"
    nurse.save(update_fields=["last_name"])
    relative = on_ward(nurse, family_name="Mbeki", given_name="Thabo")
    with django_capture_on_commit_callbacks(execute=True):
        open_chart(nurse, relative)
    (message,) = mail.outbox
    alert = Alert.objects.get()
    assert message.to == ["soc@hospital.example"]
    assert f"/{alert.pk}/" in message.body
    text = message.subject + message.body
    for secret in ("Mbeki", "Thabo", relative.mrn, nurse.username, f"patients/{relative.pk}"):
        assert secret not in text


def test_medium_severity_alert_sends_no_mail(
    physician: User, security: User, django_capture_on_commit_callbacks: Any
) -> None:
    security.email = "soc@hospital.example"
    security.save(update_fields=["email"])
    with django_capture_on_commit_callbacks(execute=True):
        _signal_access(physician, PatientFactory().pk, "")
    assert Alert.objects.get().severity == Alert.Severity.MEDIUM
    assert mail.outbox == []


# --- Pure helpers ----------------------------------------------------------------------------------


def _access(*, actor_id: int = 1, explanation: str = "ward", role: str = "nurse") -> rules.Access:
    return rules.Access(1, (1,), actor_id, "u", role, 5, "view", "demographics", explanation, timezone.now())


def _facts(**kwargs: Any) -> rules.AccessFacts:
    defaults: dict[str, Any] = {
        "actor": rules.ActorFacts(),
        "patient": rules.PatientFacts(),
        "user_baseline": None,
        "department_baseline": None,
        "local_hour": 10,
        "open_order": None,
        "patients_this_hour": 1,
        "new_this_hour": True,
        "found_by_name_search": False,
    }
    defaults.update(kwargs)
    return rules.AccessFacts(**defaults)


def test_usual_hours_widen_by_the_margin_and_wrap_midnight() -> None:
    assert rules.usual_hours({23: 50, 0: 50}) == frozenset({22, 23, 0, 1})
    assert rules.usual_hours({}) == frozenset()
    assert 12 not in rules.usual_hours({10: 1000, 12: 1})


def test_every_rule_has_a_docstring_and_a_reason_without_placeholders() -> None:
    for rule in rules.ALL_RULES.values():
        assert rule.judge.__doc__, rule.name


def test_repeats_of_a_finding_join_the_open_alert(nurse: User) -> None:
    nurse.last_name = "Okafor"
    nurse.save(update_fields=["last_name"])
    relative = on_ward(nurse, family_name="Okafor")
    open_chart(nurse, relative)
    open_chart(nurse, relative)
    alert = Alert.objects.get()
    accesses = AccessEvent.objects.filter(patient_id=relative.pk, action="view").values("at").distinct().count()
    assert accesses == 2
    assert alert.subjects.count() == AccessEvent.objects.filter(patient_id=relative.pk, action="view").count()
    alert.status = Alert.Status.CLOSED_JUSTIFIED
    alert.save(update_fields=["status"])
    open_chart(nurse, relative)
    assert Alert.objects.count() == 2  # a closed case is not reopened silently
