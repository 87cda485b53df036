"""A disclosure (an export or print of a patient's record for someone outside) is an access event of its own,
naming the recipient, written in the same transaction: if it cannot be written, the disclosure fails."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, transaction

from accounts.models import User
from audit.models import AccessEvent
from records.signals import disclosure_made
from tests.factories import PatientFactory, assign

pytestmark = pytest.mark.django_db


def test_a_disclosure_is_recorded_with_its_recipient_and_purpose(physician: User) -> None:
    patient = PatientFactory()
    assign(physician, patient)
    disclosure_made.send(
        sender=None,
        actor=physician,
        patient_id=patient.pk,
        category="summary",
        purpose="continuity_of_care",
        recipient="St. Elsewhere Hospital",
    )
    (event,) = AccessEvent.objects.filter(action="disclose")
    assert (event.actor_id, event.patient_id, event.category, event.purpose) == (
        physician.pk,
        patient.pk,
        "summary",
        "continuity_of_care",
    )
    assert event.detail == {"recipient": "St. Elsewhere Hospital"}
    assert event.mac  # written with its MAC, for the sealer to chain like every other event


def test_a_disclosure_that_cannot_be_recorded_fails_instead_of_passing_silently(
    physician: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise DatabaseError("audit table unavailable")

    patient = PatientFactory()
    monkeypatch.setattr("audit.services.insert_unsealed", broken)
    with pytest.raises(DatabaseError), transaction.atomic():
        disclosure_made.send(sender=None, actor=physician, patient_id=patient.pk, recipient="Someone")
    assert not AccessEvent.objects.filter(action="disclose").exists()
