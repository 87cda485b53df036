"""records.selectors.record_for_recipient: a system recipient's read (the partner API) asks the
recipient's policy inside the read path, records the access and the disclosure before decrypting,
and reads only the sections asked for."""

from __future__ import annotations

import pytest

from accounts.roles import DataCategory
from audit.models import AccessEvent
from records.selectors import AccessRefused
from records.selectors.export import record_for_recipient
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db
D = DataCategory


def test_the_recipients_policy_is_asked_first_and_a_no_records_nothing() -> None:
    patient = PatientFactory()
    asked: list[int] = []

    def may_see(pk: int) -> bool:
        asked.append(pk)
        return False

    with pytest.raises(AccessRefused) as refused:
        record_for_recipient(
            patient_id=patient.pk,
            sections=frozenset({D.DEMOGRAPHICS}),
            recipient="X",
            purpose="treatment",
            may_see=may_see,
        )
    assert refused.value.status == 404
    assert asked == [patient.pk]
    assert not AccessEvent.objects.exists()


def test_only_the_sections_asked_for_are_read_and_recorded() -> None:
    patient = PatientFactory(family_name="Sectionwise")
    record = record_for_recipient(
        patient_id=patient.pk,
        sections=frozenset({D.DEMOGRAPHICS, D.ALLERGIES}),
        recipient="Northside Clinic",
        purpose="treatment",
        may_see=lambda pk: True,
        detail={"partner_id": 7},
    )
    assert record.patient.family_name == "Sectionwise"
    assert record.categories == frozenset({D.DEMOGRAPHICS, D.ALLERGIES})
    (read,) = AccessEvent.objects.filter(action="partner_read")
    assert list(read.sections) == ["allergies", "demographics"]
    assert read.detail == {"partner_id": 7}
    (disclosure,) = AccessEvent.objects.filter(action="disclose")
    assert disclosure.detail == {"recipient": "Northside Clinic"}


@pytest.mark.parametrize(
    ("sections", "recipient"),
    [(frozenset(), "X"), (frozenset({"audit_trail"}), "X"), (frozenset({D.DEMOGRAPHICS}), "  ")],
)
def test_a_read_without_sections_or_recipient_is_a_programming_error(sections: frozenset[str], recipient: str) -> None:
    with pytest.raises(ValueError, match=r"names (sections|its recipient)"):
        record_for_recipient(
            patient_id=PatientFactory().pk,
            sections=sections,
            recipient=recipient,
            purpose="treatment",
            may_see=lambda pk: True,
        )
    assert not AccessEvent.objects.exists()
