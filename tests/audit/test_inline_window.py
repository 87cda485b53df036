"""The inline rules' window of a user's events (patients opened this clock hour, whether this one is
new, whether a name search found them) is read narrowed in SQL: the hour's judged openings without
their JSON, and the name searches that found the patients opened now. These tests pin it to the
reference, the full stream of the user's events fed to ``ActorWindow`` the way scan_access reads them."""

from __future__ import annotations

import datetime
import random

import pytest
import time_machine
from django.utils import timezone

from accounts.models import User
from audit import rules
from audit.facts import ActorWindow, inline_facts, window_start
from audit.models import AccessEvent
from audit.services import access_event_record
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db

START = datetime.datetime(2026, 12, 3, 9, 40, tzinfo=datetime.UTC)


def _reference(actor: User, event: AccessEvent) -> tuple[int, bool, bool]:
    state = ActorWindow()
    rows = AccessEvent.objects.filter(actor_id=actor.pk, at__gte=window_start(event.at), at__lte=event.at)
    result = (1, True, False)
    for row in rows.order_by("at", "id").values():
        found = state.feed(row)
        if row["id"] == event.pk and found is not None:
            result = found
    return result


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_the_narrowed_window_gives_what_the_full_stream_gives(physician: User, nurse: User, seed: int) -> None:
    chooser = random.Random(seed)
    patients = [PatientFactory() for _ in range(8)]
    at = START
    seen: set[tuple[int, bool, bool]] = set()
    previous_search = None
    for _ in range(60):
        at += datetime.timedelta(seconds=chooser.choice([5, 30, 90, 400]))  # crosses the 10:00 hour
        patient = chooser.choice(patients)
        kind = chooser.random()
        if previous_search is not None and chooser.random() < 0.5:
            patient, kind = previous_search, 1.0  # open the patient the last search listed
        previous_search = None
        with time_machine.travel(at, tick=False):
            if kind < 0.2:  # a search that listed the patient, by name or by MRN
                by = chooser.choice([*sorted(rules.NAME_SEARCHES), "mrn"])
                access_event_record(
                    actor=physician,
                    patient_ids=[patient.pk],
                    categories=["demographics"],
                    action="search_result",
                    detail={"by": by},
                )
                previous_search = patient
                continue
            if kind < 0.27:  # the audit trail of a patient: not a chart opening
                access_event_record(
                    actor=physician, patient_ids=[patient.pk], categories=["audit_trail"], action="view"
                )
                continue
            if kind < 0.32:  # someone else's opening: not this user's window
                access_event_record(actor=nurse, patient_ids=[patient.pk], categories=["vitals"], action="view")
                continue
            (event,) = access_event_record(
                actor=physician, patient_ids=[patient.pk], categories=["demographics", "notes"], action="view"
            )
        ((_, facts),) = inline_facts(physician, [event])
        window = (facts.patients_this_hour, facts.new_this_hour, facts.found_by_name_search)
        assert window == _reference(physician, event), f"event {event.pk} at {event.at:%H:%M:%S}"
        seen.add(window)
    # The stream really exercised the window: repeat openings, several patients, name searches.
    assert any(not new for _, new, _ in seen)
    assert any(count > 3 for count, _, _ in seen)
    assert any(by_name for _, _, by_name in seen)
    assert timezone.now() > START  # the clock is back
