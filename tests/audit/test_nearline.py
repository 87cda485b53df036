"""``ANOMALY_RULES_AT = "sealer"`` (audit/detection/nearline.py): the request records the access and judges
nothing; the sealer judges what it sealed, after sealing committed, with the bulk engine, and finds what
the request would have found. A durable cursor makes a crash between sealing and judging harmless and
keeps the sealer from judging anything twice; a failing rule stops neither sealing nor judging.

The rest of the suite judges in the request (healthcrypt/settings_test.py sets "request")."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from audit import rules
from audit.chain import AuditChainHead
from audit.detection import nearline
from audit.models import AccessEvent, Alert, AlertSubject, RuleFailure, RulesCursor
from audit.sealer import seal_events
from audit.verify import unjudged_problems, verify_all
from records.models import BreakGlassGrant
from records.signals import break_glass_granted, patient_data_accessed
from tests.audit.rule_helpers import on_ward, open_chart, rules_raised
from tests.audit.test_scan_access import DAY, misuse
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def at_sealer(settings: Any) -> None:
    settings.ANOMALY_RULES_AT = "sealer"


def _head() -> int:
    return AuditChainHead.objects.get(stream="access", partition=0).last_seq


def _access_subjects() -> set[tuple[str, int]]:
    return set(AlertSubject.objects.filter(kind="access").values_list("rule", "object_id"))


def _signal_access(actor: User, patient_id: int, explanation: str, sections: tuple[str, ...]) -> None:
    patient_data_accessed.send(
        sender=None,
        actor=actor,
        patient_id=patient_id,
        patient_ids=(patient_id,),
        category=sections[0],
        categories=sections,
        action="view",
        purpose="treatment",
        explanation=explanation,
    )


def test_a_chart_view_raises_no_alert_in_the_request_and_the_sealer_raises_it(
    at_sealer: None, nurse: User, client_for: Callable[[User], Client]
) -> None:
    vip = on_ward(nurse, is_confidential=True)
    assert client_for(nurse).get(reverse("records:chart", args=[vip.pk])).status_code == 200
    assert AccessEvent.objects.filter(patient_id=vip.pk).exists()
    assert not Alert.objects.exists()
    run = seal_events()
    assert run.judged is not None
    assert [a.rule for a in run.judged.raised] == ["confidential_patient"]
    assert rules_raised(vip) == ["confidential_patient"]
    assert nearline.judged_up_to() == _head()
    assert verify_all()[0] == []


def test_the_sealer_finds_what_the_request_finds_for_every_access_rule(
    settings: Any, nurse: User, physician: User, ems: User, radiology: User, lab: User
) -> None:
    settings.ANOMALY_RULES_AT = "request"
    misuse(nurse, physician, ems)
    with time_machine.travel(DAY.replace(hour=11), tick=True):
        me = on_ward(nurse, address_line="12 Elm Road", postal_code="AB1 2CD")
        me.staff_user = nurse
        me.save(update_fields=["staff_user"])
        neighbour = on_ward(nurse, address_line="12 elm road", postal_code="AB1 2CD")
        late = on_ward(nurse, deceased_date=datetime.date(2026, 1, 2))
        for patient in (me, neighbour, late):
            open_chart(nurse, patient)
        _signal_access(physician, PatientFactory().pk, "", ("demographics", "notes"))
        _signal_access(radiology, PatientFactory().pk, "order", ("demographics", "imaging"))
        _signal_access(lab, PatientFactory().pk, "order", ("demographics", "observations"))
    in_request = _access_subjects()
    assert {rule for rule, _ in in_request} == {rule.name for rule in rules.ACCESS_RULES}
    assert AccessEvent.objects.filter(hash="").exists()  # nothing sealed yet
    Alert.objects.all().delete()

    settings.ANOMALY_RULES_AT = "sealer"
    run = seal_events()
    assert run.judged is not None
    assert run.judged.failures == 0
    assert _access_subjects() == in_request


def test_a_crash_between_sealing_and_judging_is_judged_by_the_next_run(
    at_sealer: None, nurse: User, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    vip = on_ward(nurse, is_confidential=True)
    open_chart(nurse, vip)

    def killed(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("sealer killed before judging")

    monkeypatch.setattr(nearline, "judge_sealed", killed)
    run = seal_events()
    assert run.sealed["access"] == AccessEvent.objects.count()
    assert not AccessEvent.objects.filter(hash="").exists()  # sealing committed regardless
    assert not Alert.objects.exists()
    assert nearline.judged_up_to() == 0
    assert "judging sealed access events failed" in caplog.text
    later = timezone.now() + datetime.timedelta(minutes=5)
    (problem,) = unjudged_problems(now=later)
    assert problem.kind == "unjudged"
    assert "seal_audit --loop" in str(problem)

    monkeypatch.undo()
    seal_events()
    assert rules_raised(vip) == ["confidential_patient"]
    assert nearline.judged_up_to() == _head()
    assert unjudged_problems(now=later) == []


def test_a_crash_while_judging_undoes_its_alerts_and_the_next_run_raises_them_once(
    at_sealer: None, nurse: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    vip = on_ward(nurse, is_confidential=True)
    open_chart(nurse, vip)

    def killed(self: Any, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("killed before the cursor moved")

    with monkeypatch.context() as patched:
        patched.setattr(RulesCursor, "save", killed)
        seal_events()
    # The alerts and the cursor are one transaction: neither happened.
    assert not Alert.objects.exists()
    assert nearline.judged_up_to() == 0
    seal_events()
    seal_events()
    assert rules_raised(vip) == ["confidential_patient"]
    assert AlertSubject.objects.count() == 1


def test_running_the_sealer_twice_raises_nothing_twice(at_sealer: None, nurse: User, physician: User) -> None:
    for patient in (on_ward(nurse, is_confidential=True), on_ward(nurse, deceased_date=datetime.date(2026, 1, 2))):
        open_chart(nurse, patient)
    first = seal_events()
    assert first.judged is not None
    assert len(first.judged.raised) == 2
    again = seal_events()
    assert again.judged is not None
    assert (again.judged.judged, again.judged.raised) == (0, [])
    # At least once is harmless: judged again from the start, nothing is raised twice.
    RulesCursor.objects.filter(stream="access").update(last_seq=0)
    assert nearline.judge_sealed().raised == []
    assert Alert.objects.count() == 2


def test_a_failing_rule_stops_neither_sealing_nor_judging_the_rest(
    at_sealer: None, nurse: User, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    first = on_ward(nurse, is_confidential=True, family_name="Treatedsurname")
    second = on_ward(nurse, is_confidential=True)

    def broken(access: Any, facts: Any) -> None:
        if access.patient_id == first.pk:
            raise ValueError("Treatedsurname")  # a message that quotes data must not be kept

    monkeypatch.setattr(rules, "ACCESS_RULES", (rules.Rule("broken", 3, broken), *rules.ACCESS_RULES))
    open_chart(nurse, first)
    open_chart(nurse, second)
    run = seal_events()
    assert not AccessEvent.objects.filter(hash="").exists()
    # The other rules on the same access, and the next access, were judged.
    assert (rules_raised(first), rules_raised(second)) == (["confidential_patient"], ["confidential_patient"])
    assert list(RuleFailure.objects.values_list("rule", "kind", "error")) == [("broken", "access", "ValueError")]
    assert run.judged is not None
    assert run.judged.failures == 1
    assert nearline.judged_up_to() == _head()
    assert "Treatedsurname" not in caplog.text


def test_failing_fact_gathering_is_recorded_and_the_cursor_moves_on(
    at_sealer: None, nurse: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError

    monkeypatch.setattr(nearline, "judge_batch", broken)
    open_chart(nurse, on_ward(nurse, is_confidential=True))
    seal_events()
    failure = RuleFailure.objects.get()
    assert (failure.rule, failure.kind, failure.error) == ("facts", "access", "RuntimeError")
    assert nearline.judged_up_to() == _head()
    assert not Alert.objects.exists()


def test_judging_is_bounded_per_round_and_catches_up_over_the_next(at_sealer: None, nurse: User) -> None:
    patients = [on_ward(nurse, is_confidential=True) for _ in range(5)]
    for patient in patients:
        open_chart(nurse, patient)
    from audit.sealer import seal_stream

    seal_stream(AccessEvent)
    events = list(AccessEvent.objects.order_by("seq").values_list("seq", flat=True))
    assert len(events) == 5
    first = nearline.judge_sealed(batch=2, rounds=1)
    assert (first.judged, nearline.judged_up_to()) == (2, events[1])
    rest = nearline.judge_sealed(batch=2, rounds=5)
    assert (rest.judged, nearline.judged_up_to()) == (3, events[-1])
    assert Alert.objects.count() == 5


def test_in_request_mode_the_sealer_judges_nothing_and_keeps_the_cursor_at_the_head(nurse: User, settings: Any) -> None:
    settings.ANOMALY_RULES_AT = "request"
    vip = on_ward(nurse, is_confidential=True)
    open_chart(nurse, vip)
    assert rules_raised(vip) == ["confidential_patient"]  # in the request
    run = seal_events()
    assert run.judged is None
    assert nearline.judged_up_to() == _head()
    later = timezone.now() + datetime.timedelta(minutes=5)
    assert unjudged_problems(now=later) == []
    # Switching to the sealer then starts after what the requests judged.
    settings.ANOMALY_RULES_AT = "sealer"
    assert nearline.judge_sealed().judged == 0


def test_the_rules_off_switch_turns_the_sealers_judging_off_too(at_sealer: None, nurse: User, settings: Any) -> None:
    settings.ANOMALY_RULES_INLINE = False  # the benchmarks' "rules off" (bench/load/settings_no_rules.py)
    open_chart(nurse, on_ward(nurse, is_confidential=True))
    assert seal_events().judged is None
    assert not Alert.objects.exists()
    assert nearline.judged_up_to() == _head()


def test_a_break_the_glass_grant_is_still_judged_in_the_request(at_sealer: None, ems: User) -> None:
    grant = BreakGlassGrant.objects.create(
        user=ems,
        patient=PatientFactory(),
        reason=BreakGlassGrant.Reason.EMERGENCY_TREATMENT,
        explanation="Collapsed",
        granted_at=timezone.now(),
        expires_at=timezone.now() + datetime.timedelta(hours=1),
    )
    break_glass_granted.send(sender=BreakGlassGrant, grant=grant, actor=ems)
    assert list(Alert.objects.values_list("rule", flat=True)) == ["break_glass"]


def test_seal_audit_says_what_it_judged(at_sealer: None, nurse: User) -> None:
    from io import StringIO

    from django.core.management import call_command

    open_chart(nurse, on_ward(nurse, is_confidential=True))
    out = StringIO()
    call_command("seal_audit", stdout=out)
    assert "Judged 1 access(es): 1 new alert(s), 0 rule failure(s)." in out.getvalue()


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({"DATABASE_URL": "postgres://app@127.0.0.1:5432/hc"}, "sealer"),  # a sealer process of its own
        ({"AUDIT_SEAL_ON_COMMIT": "1"}, "request"),  # SQLite, the demo: sealed in-process anyway
        ({"AUDIT_SEAL_ON_COMMIT": "0"}, "sealer"),
        ({"AUDIT_SEAL_ON_COMMIT": "0", "ANOMALY_RULES_AT": "request"}, "request"),
        ({"ANOMALY_RULES_AT": "nowhere"}, "ImproperlyConfigured"),
    ],
)
def test_the_setting_follows_where_the_sealer_runs_and_refuses_an_unknown_place(
    environment: dict[str, str], expected: str
) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "AUDIT_", "ANOMALY_"))}
    result = subprocess.run(
        [sys.executable, "-c", "import healthcrypt.settings as s; print(s.ANOMALY_RULES_AT)"],
        env={**clean, **environment},
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=False,
    )
    assert expected in (result.stdout + result.stderr).strip().splitlines()[-1]


@pytest.mark.django_db(transaction=True)
def test_two_sealers_judging_at_once_judge_every_access_once(settings: Any) -> None:
    """The cursor row is locked while a batch is judged: concurrent sealers take turns, and between them
    every sealed access is judged exactly once (PostgreSQL; SQLite has one writer at a time)."""
    import threading

    from django.db import connection

    from audit.sealer import seal_stream
    from audit.services import access_event_record

    if connection.vendor == "sqlite":
        pytest.skip("SQLite has one writer at a time: concurrency is PostgreSQL's to prove")
    settings.ANOMALY_RULES_AT = "sealer"
    total = 40
    for n in range(total):  # unexplained openings: each one a finding of its own
        access_event_record(actor=None, patient_ids=[1000 + n], categories=["demographics"], action="view")
    seal_stream(AccessEvent)
    judged: list[int] = []
    errors: list[BaseException] = []

    def judge() -> None:
        try:
            while nearline.unjudged().exists():
                judged.append(nearline.judge_sealed(batch=3, rounds=1).judged)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=judge) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(judged) == total
    assert AlertSubject.objects.filter(kind="access", rule="unexplained_view").count() == total
    assert nearline.judged_up_to() == _head()
