"""The write path refuses what it must, validates before saving, and reports each change it makes.

Services are called directly here (the views over them are covered in test_workflows.py): each test
names the rule it protects and checks the outcome in the database and in the audit trail.
"""

from __future__ import annotations

import datetime
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import override_settings
from django.utils import timezone

from accounts.models import User
from accounts.roles import ChartAccess, DataCategory, Role, policy_for
from audit.models import ChangeEvent
from records.demo_clinical import tiny_png
from records.models import Attachment, CareAssignment, ClinicalNote, Encounter, Medication, Observation, Order
from records.permissions import chart_access, order_access
from records.services import (
    DuplicatePatient,
    RecordNotFound,
    attachment_upload,
    care_assignment_create,
    care_assignment_end,
    encounter_admit,
    encounter_discharge,
    medication_administer,
    note_amend,
    note_write,
    observation_record,
    order_cancel,
    order_complete,
    order_place,
    patient_register,
    patient_update_demographics,
)
from records.signals import patient_data_changed
from tests.factories import UserFactory
from tests.records.conftest import Ward

pytestmark = pytest.mark.django_db

# Capabilities that add to or change a patient's chart through _require_relationship.
CHART_WRITES = {"write_note", "place_order", "prescribe", "record_vitals", "administer_medication"}


def changes(**filters: object) -> list[ChangeEvent]:
    return list(ChangeEvent.objects.filter(**filters).order_by("id"))


# --- Refusals by role -----------------------------------------------------------------------------


def test_every_role_that_may_write_to_a_chart_has_chart_access() -> None:
    # The write path maps any chart refusal to 404 (no 403 branch): that is only right while no role
    # can write to a chart it may not open. This pins the role table to that rule.
    for role in Role:
        policy = policy_for(UserFactory.build(role=role))
        if policy is not None and CHART_WRITES & {c.value for c in policy.capabilities}:
            assert policy.chart_access != ChartAccess.NONE, role


def test_nurse_cannot_place_an_order_and_nothing_is_written(ward: Ward, nurse: User) -> None:
    before = Order.objects.count()
    with pytest.raises(PermissionDenied):
        order_place(
            actor=nurse,
            patient_id=ward.treated.pk,
            kind=Order.Kind.LAB,
            department=ward.lab_order.department,
            description="Full blood count",
        )
    assert Order.objects.count() == before
    assert changes(actor_id=nurse.pk) == []


def test_physician_cannot_file_a_note_against_a_department_order(ward: Ward, physician: User) -> None:
    # Reports against an order come from the department's worklist; a physician writes chart notes.
    with pytest.raises(PermissionDenied):
        note_write(
            actor=physician,
            patient_id=ward.treated.pk,
            kind=ClinicalNote.Kind.PROGRESS,
            text="Looks clear",
            order_id=ward.radiology_order.pk,
        )
    assert not ClinicalNote.objects.exists()


def test_radiology_cannot_complete_a_lab_order(ward: Ward, radiology: User) -> None:
    with pytest.raises(RecordNotFound):
        order_complete(actor=radiology, order_id=ward.lab_order.pk)
    ward.lab_order.refresh_from_db()
    assert ward.lab_order.status == Order.Status.OPEN


def test_physician_cannot_send_an_order_to_a_department_of_the_wrong_kind(ward: Ward, physician: User) -> None:
    before = Order.objects.count()
    with pytest.raises(ValidationError) as excinfo:
        order_place(
            actor=physician,
            patient_id=ward.treated.pk,
            kind=Order.Kind.RADIOLOGY,
            department=ward.lab_order.department,
            description="Chest CT",
        )
    assert "department" in excinfo.value.message_dict
    assert Order.objects.count() == before


# --- Registration and demographics ----------------------------------------------------------------


def test_registration_rejects_an_unknown_demographic_field(front_desk: User) -> None:
    with pytest.raises(TypeError, match="favourite_colour"):
        patient_register(
            actor=front_desk,
            mrn="HC-1",
            given_name="Ada",
            family_name="Field",
            birth_date=datetime.date(1970, 1, 1),
            sex="female",
            favourite_colour="blue",
        )
    assert changes(category="demographics") == []


def test_demographics_update_rejects_an_unknown_field(ward: Ward, front_desk: User) -> None:
    with pytest.raises(TypeError, match="diagnosis"):
        patient_update_demographics(actor=front_desk, patient_id=ward.treated.pk, diagnosis="flu")


def test_demographics_update_of_an_unknown_patient_is_not_found(front_desk: User) -> None:
    with pytest.raises(RecordNotFound):
        patient_update_demographics(actor=front_desk, patient_id=987654, phone="555-010-1111")


def test_demographics_update_without_a_real_change_writes_nothing(ward: Ward, front_desk: User) -> None:
    changed = patient_update_demographics(
        actor=front_desk, patient_id=ward.treated.pk, family_name=ward.treated.family_name
    )
    assert changed == []
    assert changes(actor_id=front_desk.pk) == []


def test_demographics_update_refuses_another_patients_mrn(ward: Ward, front_desk: User) -> None:
    with pytest.raises(DuplicatePatient):
        patient_update_demographics(actor=front_desk, patient_id=ward.treated.pk, mrn=ward.other.mrn)
    ward.treated.refresh_from_db()
    assert ward.treated.mrn != ward.other.mrn
    assert changes(actor_id=front_desk.pk) == []


# --- Encounters and the care team -----------------------------------------------------------------


def test_admitting_an_unknown_patient_is_not_found(front_desk: User, physician: User) -> None:
    with pytest.raises(RecordNotFound):
        encounter_admit(
            actor=front_desk, patient_id=987654, kind=Encounter.Kind.INPATIENT, department=None, attending=physician
        )


def test_the_attending_of_an_encounter_must_be_a_physician(ward: Ward, front_desk: User, nurse: User) -> None:
    with pytest.raises(ValidationError) as excinfo:
        encounter_admit(
            actor=front_desk,
            patient_id=ward.other.pk,
            kind=Encounter.Kind.INPATIENT,
            department=nurse.department,
            attending=nurse,
        )
    assert "attending" in excinfo.value.message_dict
    assert not Encounter.objects.filter(patient_id=ward.other.pk).exists()


def test_discharge_closes_the_encounter_and_is_recorded(ward: Ward, front_desk: User) -> None:
    ends = timezone.now()
    encounter = encounter_discharge(
        actor=front_desk, patient_id=ward.treated.pk, encounter_id=ward.encounter.pk, ends_at=ends
    )
    encounter.refresh_from_db()
    assert encounter.status == Encounter.Status.FINISHED
    assert encounter.ends_at == ends
    [change] = changes(actor_id=front_desk.pk)
    assert (change.action, change.category, change.patient_id) == ("update", "encounters", ward.treated.pk)
    assert sorted(change.fields) == ["ends_at", "status"]


def test_a_closed_encounter_cannot_be_discharged_again(ward: Ward, front_desk: User) -> None:
    encounter_discharge(actor=front_desk, patient_id=ward.treated.pk, encounter_id=ward.encounter.pk)
    with pytest.raises(ValidationError, match="already closed"):
        encounter_discharge(actor=front_desk, patient_id=ward.treated.pk, encounter_id=ward.encounter.pk)
    assert len(changes(actor_id=front_desk.pk, category="encounters")) == 1


def test_discharging_an_unknown_encounter_is_not_found(front_desk: User) -> None:
    with pytest.raises(RecordNotFound):
        encounter_discharge(actor=front_desk, patient_id=1, encounter_id=987654)


def test_care_team_of_an_unknown_patient_is_not_found(front_desk: User, nurse: User) -> None:
    with pytest.raises(RecordNotFound):
        care_assignment_create(actor=front_desk, staff=nurse, patient=987654, team_role="primary_nurse")


@pytest.mark.parametrize("who", ["radiology", "inactive_nurse"])
def test_only_active_physicians_and_nurses_join_a_care_team(
    ward: Ward, front_desk: User, radiology: User, who: str
) -> None:
    staff = radiology if who == "radiology" else UserFactory(role=Role.NURSE, is_active=False)
    with pytest.raises(ValidationError) as excinfo:
        care_assignment_create(actor=front_desk, staff=staff, patient=ward.other, team_role="primary_nurse")
    assert "staff" in excinfo.value.message_dict
    assert not CareAssignment.objects.filter(staff=staff).exists()


def test_ending_an_assignment_ends_access_to_the_chart(ward: Ward, front_desk: User, physician: User) -> None:
    assignment = CareAssignment.objects.get(staff=physician, patient=ward.treated)
    # The physician also attends the open encounter: close it, so the assignment is the only relationship.
    encounter_discharge(actor=front_desk, patient_id=ward.treated.pk, encounter_id=ward.encounter.pk)
    assert chart_access(physician, ward.treated.pk).allowed

    care_assignment_end(actor=front_desk, patient_id=ward.treated.pk, assignment_id=assignment.pk)

    assignment.refresh_from_db()
    assert assignment.ends_at is not None
    decision = chart_access(physician, ward.treated.pk)
    assert (decision.allowed, decision.status) == (False, 404)
    change = changes(actor_id=front_desk.pk, category="care_team")[-1]
    assert (change.action, change.object_id, change.fields) == ("update", assignment.pk, ["ends_at"])


def test_an_ended_assignment_cannot_be_ended_again(ward: Ward, front_desk: User, nurse: User) -> None:
    assignment = CareAssignment.objects.get(staff=nurse, patient=ward.treated)
    care_assignment_end(actor=front_desk, patient_id=ward.treated.pk, assignment_id=assignment.pk)
    with pytest.raises(RecordNotFound):
        care_assignment_end(actor=front_desk, patient_id=ward.treated.pk, assignment_id=assignment.pk)
    assert len(changes(actor_id=front_desk.pk, category="care_team")) == 1


# --- Orders ---------------------------------------------------------------------------------------


def test_cancelling_an_order_takes_it_off_the_worklist(ward: Ward, physician: User, radiology: User) -> None:
    order_cancel(actor=physician, patient_id=ward.treated.pk, order_id=ward.radiology_order.pk)

    ward.radiology_order.refresh_from_db()
    assert ward.radiology_order.status == Order.Status.CANCELLED
    decision, order = order_access(radiology, ward.radiology_order.pk)
    assert order is None
    assert decision.status == 404
    change = changes(actor_id=physician.pk, category="orders", action="update")[-1]
    assert (change.object_id, change.fields) == (ward.radiology_order.pk, ["status"])


def test_a_cancelled_order_cannot_be_cancelled_again(ward: Ward, physician: User) -> None:
    order_cancel(actor=physician, patient_id=ward.treated.pk, order_id=ward.lab_order.pk)
    with pytest.raises(RecordNotFound):
        order_cancel(actor=physician, patient_id=ward.treated.pk, order_id=ward.lab_order.pk)


def test_a_physician_off_the_care_team_cannot_cancel_an_order(ward: Ward, outsider: User) -> None:
    with pytest.raises(RecordNotFound):
        order_cancel(actor=outsider, patient_id=ward.treated.pk, order_id=ward.lab_order.pk)
    ward.lab_order.refresh_from_db()
    assert ward.lab_order.status == Order.Status.OPEN
    assert changes(actor_id=outsider.pk) == []


# --- Clinical entries -----------------------------------------------------------------------------


def test_a_result_for_another_patient_than_its_order_is_refused(ward: Ward, lab: User) -> None:
    with pytest.raises(RecordNotFound):
        observation_record(
            actor=lab,
            patient_id=ward.other.pk,
            category=Observation.Category.LABORATORY,
            display="Troponin",
            value="0.01",
            order_id=ward.lab_order.pk,
        )
    assert not Observation.objects.exists()
    ward.lab_order.refresh_from_db()
    assert ward.lab_order.status == Order.Status.OPEN


def test_a_report_for_another_patient_than_its_order_is_refused(ward: Ward, radiology: User) -> None:
    with pytest.raises(RecordNotFound):
        note_write(
            actor=radiology,
            patient_id=ward.other.pk,
            kind=ClinicalNote.Kind.RADIOLOGY,
            text="No acute findings",
            order_id=ward.radiology_order.pk,
        )
    assert not ClinicalNote.objects.exists()


def test_amending_an_unknown_note_is_not_found(physician: User) -> None:
    with pytest.raises(RecordNotFound):
        note_amend(actor=physician, patient_id=1, note_id=987654, text="Correction")


def test_administering_an_unknown_prescription_is_not_found(nurse: User) -> None:
    with pytest.raises(RecordNotFound):
        medication_administer(actor=nurse, patient_id=1, medication_id=987654, dose="75 mg")


def test_a_stopped_prescription_cannot_be_administered(ward: Ward, nurse: User) -> None:
    Medication.objects.filter(pk=ward.medication.pk).update(status=Medication.Status.STOPPED)
    with pytest.raises(ValidationError, match="not active"):
        medication_administer(actor=nurse, patient_id=ward.treated.pk, medication_id=ward.medication.pk, dose="75 mg")
    assert changes(actor_id=nurse.pk) == []


# --- Attachments ----------------------------------------------------------------------------------


@pytest.fixture
def media(tmp_path: Path) -> Iterator[Path]:
    with override_settings(MEDIA_ROOT=tmp_path):
        yield tmp_path


def upload(ward: Ward, radiology: User, seed: int) -> Attachment:
    return attachment_upload(
        actor=radiology,
        order_id=ward.radiology_order.pk,
        source=io.BytesIO(tiny_png(seed)),
        filename="chest.png",
        content_type="image/png",
        max_bytes=1_000_000,
    )


def test_uploads_start_an_order_and_a_second_one_keeps_it_in_progress(ward: Ward, radiology: User, media: Path) -> None:
    upload(ward, radiology, 1)
    ward.radiology_order.refresh_from_db()
    assert ward.radiology_order.status == Order.Status.IN_PROGRESS

    second = upload(ward, radiology, 2)
    ward.radiology_order.refresh_from_db()
    assert ward.radiology_order.status == Order.Status.IN_PROGRESS
    assert Attachment.objects.filter(order=ward.radiology_order).count() == 2
    change = changes(actor_id=radiology.pk, category=DataCategory.IMAGING)[-1]
    assert (change.action, change.object_id) == ("create", second.pk)


def test_an_upload_whose_change_cannot_be_recorded_leaves_no_file_behind(
    ward: Ward, radiology: User, media: Path
) -> None:
    def broken(sender: object, **kwargs: object) -> None:
        raise RuntimeError("audit store down")

    patient_data_changed.connect(broken, dispatch_uid="test-broken-upload")
    try:
        with pytest.raises(RuntimeError):
            upload(ward, radiology, 3)
    finally:
        patient_data_changed.disconnect(dispatch_uid="test-broken-upload")
    assert not Attachment.objects.exists()
    assert list((media / "attachments").iterdir()) == []
    ward.radiology_order.refresh_from_db()
    assert ward.radiology_order.status == Order.Status.OPEN
