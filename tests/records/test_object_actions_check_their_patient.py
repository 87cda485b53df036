"""Actions on one object (a stay, an assignment, an order, a prescription, a note) act only on the
patient in the URL; a discharge happens once; refusals are 4xx.

A stay or an assignment of another patient, reached through this patient's URL, is a 404 as if it
did not exist; a second discharge is a 409 with a plain message; neither writes anything.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from audit.models import ChangeEvent
from records.models import CareAssignment, ClinicalNote, Encounter, MedicationAdministration, Order
from records.services import (
    RecordNotFound,
    care_assignment_end,
    encounter_admit,
    encounter_discharge,
    medication_prescribe,
    note_write,
    order_place,
)
from tests.factories import assign
from tests.records.conftest import Ward

pytestmark = pytest.mark.django_db


def other_patients_stay(ward: Ward, physician: User) -> Encounter:
    assert physician.department is not None
    return encounter_admit(
        actor=None,
        patient_id=ward.other.pk,
        kind=Encounter.Kind.INPATIENT,
        department=physician.department,
        attending=physician,
        reason="Fall",
        starts_at=timezone.now() - datetime.timedelta(hours=1),
    )


def change_count() -> int:
    return ChangeEvent.objects.count()


def test_discharging_twice_is_a_409_with_a_message_and_keeps_the_first_discharge(
    ward: Ward, front_desk: User, client_for: Callable[[User], Client]
) -> None:
    client = client_for(front_desk)
    url = reverse("records:discharge", args=[ward.treated.pk, ward.encounter.pk])
    assert client.post(url).status_code == 302
    ward.encounter.refresh_from_db()
    first_end, changes_after_first = ward.encounter.ends_at, change_count()

    again = client.post(url)

    assert again.status_code == 409
    assert b"already closed" in again.content
    ward.encounter.refresh_from_db()
    assert (ward.encounter.status, ward.encounter.ends_at) == (Encounter.Status.FINISHED, first_end)
    assert change_count() == changes_after_first


def test_discharging_another_patients_stay_through_this_patients_url_is_404(
    ward: Ward, front_desk: User, physician: User, client_for: Callable[[User], Client]
) -> None:
    stay = other_patients_stay(ward, physician)
    before = change_count()
    response = client_for(front_desk).post(reverse("records:discharge", args=[ward.treated.pk, stay.pk]))
    assert response.status_code == 404
    stay.refresh_from_db()
    assert (stay.status, stay.ends_at) == (Encounter.Status.IN_PROGRESS, None)
    assert change_count() == before


def test_discharging_an_unknown_stay_is_404(ward: Ward, front_desk: User, client_for: Callable[[User], Client]) -> None:
    response = client_for(front_desk).post(reverse("records:discharge", args=[ward.treated.pk, 987654]))
    assert response.status_code == 404


def test_ending_another_patients_care_assignment_through_this_patients_url_is_404(
    ward: Ward, front_desk: User, physician: User, client_for: Callable[[User], Client]
) -> None:
    theirs = assign(physician, ward.other)
    before = change_count()
    response = client_for(front_desk).post(reverse("records:unassign", args=[ward.treated.pk, theirs.pk]))
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.ends_at is None
    assert change_count() == before


def test_ending_this_patients_care_assignment_works(
    ward: Ward, front_desk: User, nurse: User, client_for: Callable[[User], Client]
) -> None:
    mine = CareAssignment.objects.get(staff=nurse, patient=ward.treated)
    response = client_for(front_desk).post(reverse("records:unassign", args=[ward.treated.pk, mine.pk]))
    assert response.status_code == 302
    mine.refresh_from_db()
    assert mine.ends_at is not None


def test_services_refuse_an_object_of_another_patient(ward: Ward, front_desk: User, physician: User) -> None:
    stay = other_patients_stay(ward, physician)
    theirs = assign(physician, ward.other)
    with pytest.raises(RecordNotFound):
        encounter_discharge(actor=front_desk, patient_id=ward.treated.pk, encounter_id=stay.pk)
    with pytest.raises(RecordNotFound):
        care_assignment_end(actor=front_desk, patient_id=ward.treated.pk, assignment_id=theirs.pk)
    stay.refresh_from_db()
    theirs.refresh_from_db()
    assert (stay.ends_at, theirs.ends_at) == (None, None)


# The same rule for the chart's object actions. The actor treats both patients here, so the only
# thing between them and the other patient's order, prescription or note is the URL's patient.


def test_cancelling_another_patients_order_through_this_patients_url_is_404(
    ward: Ward, physician: User, client_for: Callable[[User], Client]
) -> None:
    assign(physician, ward.other)
    theirs = order_place(
        actor=physician,
        patient_id=ward.other.pk,
        kind=Order.Kind.LAB,
        department=ward.lab_order.department,
        description="X",
    )
    response = client_for(physician).post(reverse("records:order_cancel", args=[ward.treated.pk, theirs.pk]))
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.status in Order.OPEN_STATUSES


def test_giving_a_dose_of_another_patients_prescription_through_this_patients_url_is_404(
    ward: Ward, physician: User, nurse: User, client_for: Callable[[User], Client]
) -> None:
    assign(physician, ward.other)
    assign(nurse, ward.other, "primary_nurse")
    theirs = medication_prescribe(actor=physician, patient_id=ward.other.pk, display="Heparin", dosage="5000 IU")
    response = client_for(nurse).post(
        reverse("records:administer", args=[ward.treated.pk, theirs.pk]), {"dose": "5000 IU", "note": ""}
    )
    assert response.status_code == 404
    assert not MedicationAdministration.objects.filter(medication=theirs).exists()


def test_amending_another_patients_note_through_this_patients_url_is_404(
    ward: Ward, physician: User, client_for: Callable[[User], Client]
) -> None:
    assign(physician, ward.other)
    theirs = note_write(actor=physician, patient_id=ward.other.pk, kind=ClinicalNote.Kind.PROGRESS, text="Stable")
    response = client_for(physician).post(
        reverse("records:note_amend", args=[ward.treated.pk, theirs.pk]), {"text": "Correction"}
    )
    assert response.status_code == 404
    assert not ClinicalNote.objects.filter(amends=theirs).exists()
