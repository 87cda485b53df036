"""Two messages registering the same new patient at once (a second listener, ``ingest_hl7`` on a file):
the one refused by the database's uniqueness check is applied once more and finds the registration,
instead of being answered AE (exchange/hl7/ingest.py)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.db import IntegrityError, connection

from accounts.models import User
from exchange.hl7 import handlers
from exchange.hl7.ingest import Outcome, ingest_message
from exchange.models import HL7Message
from records.models import Encounter, Patient
from tests.exchange.hl7.test_ingest import ADT_A04
from tests.exchange.races import race


def _ingest(text: str, actor: User) -> Outcome:
    return ingest_message(text, actor=actor, channel=HL7Message.Channel.MLLP)


@pytest.fixture
def refusals(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """The ADT^A04 handler does its work, then the database refuses the transaction ``refuse`` times
    (as a concurrent registration's INSERT of the same MRN would make it)."""
    state = {"refuse": 1, "calls": 0}
    real = handlers.HANDLERS[("ADT", "A04")]

    def refused_at_the_end(message: Any, actor: Any) -> Any:
        state["calls"] += 1
        handled = real(message, actor)
        if state["calls"] <= state["refuse"]:
            raise IntegrityError("duplicate key value violates unique constraint")
        return handled

    monkeypatch.setitem(handlers.HANDLERS, ("ADT", "A04"), refused_at_the_end)
    return state


@pytest.mark.django_db
def test_a_message_refused_by_a_uniqueness_check_is_applied_once_more(
    interface: User, refusals: dict[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="exchange.hl7.ingest"):
        outcome = _ingest(ADT_A04.format(control="RACE-1", mrn="M-700"), interface)

    assert outcome.ack_code == "AA"
    assert refusals["calls"] == 2
    assert Patient.objects.count() == 1
    assert Encounter.objects.count() == 1  # the first attempt's visit was rolled back with it
    assert list(HL7Message.objects.values_list("control_id", "status")) == [("RACE-1", "accepted")]
    assert "applying it once more" in caplog.text
    assert "M-700" not in caplog.text


@pytest.mark.django_db
def test_a_message_refused_twice_is_an_ae_with_nothing_of_it_written(interface: User, refusals: dict[str, int]) -> None:
    refusals["refuse"] = 99

    outcome = _ingest(ADT_A04.format(control="RACE-2", mrn="M-701"), interface)

    assert outcome.ack_code == "AE"
    assert "|207^" in outcome.ack
    assert refusals["calls"] == 2  # once more, not more
    assert not Patient.objects.exists()
    assert list(HL7Message.objects.values_list("control_id", "status")) == [("RACE-2", "error")]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="two writers at once: PostgreSQL's row locks")
@pytest.mark.django_db(transaction=True)
def test_two_registrations_of_one_new_patient_at_the_same_time_are_both_accepted(interface: User) -> None:
    """A registers the patient and holds its transaction open; B, another message for the same MRN,
    finds nobody committed, INSERTs and waits on A's row; A commits; B is refused, applied once more,
    and updates A's registration."""
    raced = race(
        lambda: _ingest(ADT_A04.format(control="RACE-A", mrn="M-702"), interface),
        lambda: _ingest(ADT_A04.format(control="RACE-B", mrn="M-702"), interface),
    )

    assert raced.waiting, "the second message never waited on the first's registration"
    assert all(query.startswith('INSERT INTO "records_patient"') for query in raced.waiting), [
        q[:40] for q in raced.waiting
    ]
    assert (raced.first.ack_code, raced.second.ack_code) == ("AA", "AA")
    assert Patient.objects.count() == 1
    assert Encounter.objects.count() == 2  # each message's visit
