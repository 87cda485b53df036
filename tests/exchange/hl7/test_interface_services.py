"""records/services/interfaces.py: only an interface service account may write through it."""

from __future__ import annotations

import datetime

import pytest
from django.core.exceptions import PermissionDenied

from accounts.models import User
from accounts.roles import Role
from audit.models import ChangeEvent
from records.models import Patient
from records.services import interface_patient_find, interface_patient_upsert, interface_result_record
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db

DETAILS = {"given_name": "Ada", "family_name": "Byron", "birth_date": datetime.date(1815, 12, 10), "sex": "female"}


@pytest.mark.parametrize("role", [Role.FRONT_DESK, Role.PHYSICIAN, Role.LAB])
def test_a_person_who_can_sign_in_cannot_write_as_the_interface(make_persona: object, role: Role) -> None:
    person = make_persona(role)  # type: ignore[operator]
    with pytest.raises(PermissionDenied):
        interface_patient_upsert(actor=person, mrn="X-1", **DETAILS)
    assert not Patient.objects.exists()


def test_an_inactive_or_operator_account_or_nobody_is_refused(interface: User, operator: User) -> None:
    for actor in (operator, None):
        with pytest.raises(PermissionDenied):
            interface_patient_find(actor=actor, mrn="X-1")
    interface.is_active = False
    interface.save()
    with pytest.raises(PermissionDenied):
        interface_patient_upsert(actor=interface, mrn="X-1", **DETAILS)


def test_upsert_registers_then_updates_only_what_changed(interface: User) -> None:
    first = interface_patient_upsert(actor=interface, mrn="X-2", **DETAILS)
    again = interface_patient_upsert(actor=interface, mrn="X-2", **DETAILS)
    moved = interface_patient_upsert(actor=interface, mrn="X-2", **{**DETAILS, "city": "London"})
    assert (first.created, again.changed, moved.changed) == (True, (), ("city",))
    assert [e.action for e in ChangeEvent.objects.order_by("id")] == ["create", "update"]


def test_upsert_refuses_unknown_fields(interface: User) -> None:
    with pytest.raises(TypeError, match="Unknown demographic fields: shoe_size"):
        interface_patient_upsert(actor=interface, mrn="X-3", shoe_size="9", **DETAILS)


def test_a_result_for_a_patient_that_does_not_exist_is_refused(interface: User) -> None:
    from records.services import RecordNotFound

    with pytest.raises(RecordNotFound):
        interface_result_record(actor=interface, patient_id=999999, display="Colour", value="Straw")


def test_the_sender_flag_is_kept_only_when_it_is_one_of_ours(interface: User) -> None:
    patient = PatientFactory()
    kept = interface_result_record(actor=interface, patient_id=patient.pk, display="Test", value="1", flag="H")
    dropped = interface_result_record(actor=interface, patient_id=patient.pk, display="Test", value="1", flag="A")
    assert (kept.interpretation, dropped.interpretation) == ("H", "")
