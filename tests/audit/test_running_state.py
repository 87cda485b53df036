"""The sealer's running state of the access rules (audit/detection/running.py): judged round by round,
it finds what the request and the bulk scan find, reads each actor's hour once rather than every round,
counts a late event in its own hour, and starts afresh on a database that is not the stream it read."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
import time_machine
from django.db import transaction

from accounts.models import User
from audit import rules
from audit.detection import nearline, running
from audit.detection.bulk import scan_accesses
from audit.detection.running import RunningState
from audit.models import AccessEvent, Alert, AlertSubject
from audit.sealer import seal_events, seal_stream
from audit.services import access_event_record
from tests.audit.test_scan_access import DAY, misuse
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db

HOUR = DAY.replace(hour=10)


@pytest.fixture
def at_sealer(settings: Any) -> None:
    settings.ANOMALY_RULES_AT = "sealer"
    running.reset()


def _subjects() -> set[tuple[str, int]]:
    return set(AlertSubject.objects.filter(kind="access").values_list("rule", "object_id"))


def _open(actor: User, patient_id: int) -> AccessEvent:
    (event,) = access_event_record(
        actor=actor, patient_ids=[patient_id], categories=["demographics"], action="view", explanation="attending"
    )
    return event


@pytest.mark.parametrize("batch", [2, 5])
def test_judged_a_few_events_at_a_time_the_sealer_finds_what_the_request_finds(
    settings: Any, nurse: User, physician: User, ems: User, batch: int
) -> None:
    settings.ANOMALY_RULES_AT = "request"
    misuse(nurse, physician, ems)
    in_request = _subjects()
    assert {rule for rule, _ in in_request} >= {"bulk_browsing", "search_then_open", "same_surname", "after_hours"}
    Alert.objects.all().delete()

    settings.ANOMALY_RULES_AT = "sealer"
    running.reset()
    seal_stream(AccessEvent)
    rounds = 0
    while nearline.unjudged().exists():
        assert nearline.judge_sealed(batch=batch, rounds=1).failures == 0
        rounds += 1
    assert rounds >= AccessEvent.objects.count() // batch
    assert _subjects() == in_request


def test_each_round_reads_only_what_is_new_and_bulk_browsing_is_still_found(at_sealer: None, physician: User) -> None:
    patients = [PatientFactory().pk for _ in range(rules.BULK_FLOOR + 6)]
    reads = []
    with time_machine.travel(HOUR, tick=True):
        for n, patient_id in enumerate(patients, start=1):
            _open(physician, patient_id)
            if n % 4 == 0:
                seal_events()
                reads.append(running.state().read)
        seal_events()
    # The actor's window was read once, when first judged (the first round's 4 events); every later
    # round fed what it had just sealed, with no read of the hour so far.
    assert reads == [4] * len(reads)
    assert len(reads) > 5
    crossing = AccessEvent.objects.filter(patient_id=patients[rules.BULK_FLOOR]).get()
    assert _subjects() == {("bulk_browsing", crossing.pk)}
    # The bulk scan, reading the hour whole, agrees.
    Alert.objects.all().delete()
    scan_accesses(since=HOUR, until=HOUR + datetime.timedelta(hours=1))
    assert _subjects() == {("bulk_browsing", crossing.pk)}


def test_an_event_committed_late_counts_in_its_own_hour(at_sealer: None, physician: User) -> None:
    """A long request's event (its ``at`` before events read already) is fed into its own clock hour:
    what counts at the next access of that hour includes it, as it would in the request."""
    patients = [PatientFactory().pk for _ in range(rules.BULK_FLOOR + 1)]
    with time_machine.travel(HOUR + datetime.timedelta(minutes=30), tick=True):
        for patient_id in patients[: rules.BULK_FLOOR - 1]:
            _open(physician, patient_id)
        seal_events()
        with time_machine.travel(HOUR + datetime.timedelta(minutes=5), tick=False):
            late = _open(physician, patients[rules.BULK_FLOOR - 1])  # the 30th patient, at 10:05
        seal_events()
        assert not _subjects()
        crossing = _open(physician, patients[rules.BULK_FLOOR])  # the 31st, at 10:30 and a bit
        seal_events()
    assert late.at < crossing.at
    assert _subjects() == {("bulk_browsing", crossing.pk)}


def test_the_state_starts_afresh_on_a_database_that_is_not_the_stream_it_read(at_sealer: None, physician: User) -> None:
    class Undone(Exception):
        pass

    def warm_then_undo() -> RunningState:
        with transaction.atomic():
            _open(physician, PatientFactory().pk)
            seal_events()
            warmed = running.state()
            assert warmed.actors
            assert warmed.anchor is not None
            raise Undone(warmed)  # as a restored database or a test's rollback: the events it read are gone

    with pytest.raises(Undone) as undone:
        warm_then_undo()
    warmed = undone.value.args[0]
    fresh = running.state()
    assert fresh is not warmed
    assert (fresh.actors, fresh.read_until, fresh.anchor) == ({}, None, None)


def test_a_round_whose_judging_rolls_back_judges_the_same_events_alike_next_time(
    at_sealer: None, physician: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    patients = [PatientFactory().pk for _ in range(rules.BULK_FLOOR + 1)]
    with time_machine.travel(HOUR, tick=True):
        for patient_id in patients:
            _open(physician, patient_id)
    seal_stream(AccessEvent)

    from audit.models import RulesCursor

    def killed(self: Any, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("killed before the cursor moved")

    with monkeypatch.context() as patched:
        patched.setattr(RulesCursor, "save", killed)
        with pytest.raises(RuntimeError):
            nearline.judge_sealed()
    assert not Alert.objects.exists()
    assert nearline.judge_sealed().judged == len(patients)
    crossing = AccessEvent.objects.filter(patient_id=patients[-1]).get()
    assert _subjects() == {("bulk_browsing", crossing.pk)}
    # Judged: their results are forgotten; the hour's patients are still counted for what comes next.
    state = running.state()
    assert state.results == {}
    assert len(state.actors[physician.pk].hours[rules.hour_bucket(crossing.at)]) == len(patients)
