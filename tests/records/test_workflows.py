"""Each role's work through the views: registration, the chart, the worklists, the patient's own record."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client, override_settings
from django.urls import reverse

from accounts.models import Department, User
from accounts.services import VERIFIED_AT_KEY
from audit.models import ChangeEvent
from healthcrypt.crypto import DecryptionError
from records.demo_clinical import tiny_png
from records.files import open_decrypted
from records.models import (
    Allergy,
    Attachment,
    CareAssignment,
    ClinicalNote,
    Encounter,
    Medication,
    MedicationAdministration,
    Observation,
    Order,
    Patient,
)
from tests.records.conftest import Ward

pytestmark = pytest.mark.django_db

REGISTRATION = {
    "mrn": "HC-777001",
    "given_name": "Rosa",
    "family_name": "Registerova",
    "birth_date": "1980-02-29",
    "sex": "female",
    "phone": "555-010-7777",
    "national_id": "123-45-6789",
}


# --- Front desk -----------------------------------------------------------------------------------


def test_front_desk_registers_a_patient_encrypted(front_desk: User, client_for: Callable[[User], Client]) -> None:
    response = client_for(front_desk).post(reverse("records:register"), REGISTRATION)
    patient = Patient.objects.get()
    assert response["Location"] == reverse("records:registration_detail", args=[patient.pk])
    assert patient.family_name == "Registerova"
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM records_patient")
        raw = " ".join(str(v) for v in cursor.fetchone())
    for value in ("Registerova", "Rosa", "HC-777001", "1980-02-29", "123-45-6789", "555-010-7777"):
        assert value not in raw
    change = ChangeEvent.objects.get(action="create", category="demographics")
    assert change.actor_id == front_desk.pk
    assert "family_name" in change.fields


def test_duplicate_mrn_is_refused_and_nothing_is_saved(front_desk: User, client_for: Callable[[User], Client]) -> None:
    client = client_for(front_desk)
    client.post(reverse("records:register"), REGISTRATION)
    response = client.post(
        reverse("records:register"), {**REGISTRATION, "given_name": "Other", "family_name": "Person"}
    )
    assert response.status_code == 400
    assert b"already registered" in response.content
    assert Patient.objects.count() == 1


def test_same_surname_and_birth_date_needs_confirmation(front_desk: User, client_for: Callable[[User], Client]) -> None:
    client = client_for(front_desk)
    client.post(reverse("records:register"), REGISTRATION)
    twin = {**REGISTRATION, "mrn": "HC-777002", "given_name": "Rita", "family_name": "REGISTEROVA "}
    response = client.post(reverse("records:register"), twin)
    assert response.status_code == 400
    assert b"same surname and birth date" in response.content
    response = client.post(reverse("records:register"), {**twin, "confirm_not_duplicate": "on"})
    assert response.status_code == 302
    assert Patient.objects.count() == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"birth_date": "1980-13-45"}, b"Enter a valid date"),
        ({"birth_date": "2999-01-01"}, b"cannot be in the future"),
        ({"family_name": "x" * 101}, b"at most 100 characters"),
        ({"mrn": "HC 1; DROP"}, b"only letters, digits and hyphens"),
        ({"sex": "dragon"}, b"Select a valid choice"),
        ({"email": "not-an-email"}, b"valid email"),
    ],
)
def test_bad_registration_input_gets_a_clear_400_and_no_record(
    front_desk: User, client_for: Callable[[User], Client], change: dict[str, str], message: bytes
) -> None:
    response = client_for(front_desk).post(reverse("records:register"), {**REGISTRATION, **change})
    assert response.status_code == 400
    assert message in response.content
    assert not Patient.objects.exists()


def test_front_desk_edits_demographics_and_only_changed_fields_are_recorded(
    ward: Ward, front_desk: User, client_for: Callable[[User], Client]
) -> None:
    client = client_for(front_desk)
    url = reverse("records:edit_demographics", args=[ward.other.pk])
    form = client.get(url).context["form"]
    data = {k: ("" if v is None else v) for k, v in form.initial.items()}
    data["birth_date"] = ward.other.birth_date.isoformat()
    data.pop("is_confidential", None)
    data["phone"] = "555-999-0000"
    response = client.post(url, data)
    assert response.status_code == 302, response.content[:2000]
    ward.other.refresh_from_db()
    assert ward.other.phone == "555-999-0000"
    assert ChangeEvent.objects.filter(action="update").get().fields == ["phone"]


def test_front_desk_admits_and_assigns_a_care_team(
    ward: Ward, front_desk: User, physician: User, client_for: Callable[[User], Client]
) -> None:
    client = client_for(front_desk)
    ward_dept = physician.department
    response = client.post(
        reverse("records:admit", args=[ward.other.pk]),
        {"kind": "inpatient", "department": ward_dept.pk, "attending": physician.pk, "reason": "Fall"},
    )
    assert response.status_code == 302
    assert Encounter.objects.filter(patient=ward.other, status="in_progress").exists()
    response = client.post(
        reverse("records:assign", args=[ward.other.pk]), {"staff": physician.pk, "team_role": "attending"}
    )
    assert response.status_code == 302
    assert CareAssignment.objects.filter(patient=ward.other, staff=physician, ends_at__isnull=True).exists()


def test_front_desk_never_sees_clinical_data(
    ward: Ward, front_desk: User, client_for: Callable[[User], Client]
) -> None:
    client = client_for(front_desk)
    page = client.get(reverse("records:registration_detail", args=[ward.treated.pk]))
    assert page.status_code == 200
    assert b"Aspirin" not in page.content
    assert b"Chest X-ray" not in page.content
    assert client.get(reverse("records:chart", args=[ward.treated.pk])).status_code == 403


# --- Physician ------------------------------------------------------------------------------------


def test_physician_writes_orders_prescribes_and_diagnoses(
    ward: Ward, physician: User, lab: User, client_for: Callable[[User], Client]
) -> None:
    client = client_for(physician)
    pid = ward.treated.pk
    assert (
        client.post(reverse("records:note_new", args=[pid]), {"kind": "progress", "text": "Better today."}).status_code
        == 302
    )
    assert (
        client.post(
            reverse("records:order_new", args=[pid]),
            {"kind": "lab", "department": lab.department.pk, "description": "CRP", "priority": "urgent"},
        ).status_code
        == 302
    )
    assert (
        client.post(
            reverse("records:prescription_new", args=[pid]),
            {"display": "Paracetamol 1 g", "dosage": "4x daily", "frequency": "q6h"},
        ).status_code
        == 302
    )
    assert client.post(reverse("records:condition_new", args=[pid]), {"display": "Angina"}).status_code == 302
    assert (
        client.post(
            reverse("records:allergy_new", args=[pid]), {"substance": "Penicillin", "severity": "severe"}
        ).status_code
        == 302
    )
    chart = client.get(reverse("records:chart", args=[pid])).content.decode()
    for text in ("Better today.", "CRP", "Paracetamol 1 g", "Angina", "Penicillin"):
        assert text in chart


def test_order_to_a_department_of_the_wrong_kind_is_refused(
    ward: Ward, physician: User, radiology: User, client_for: Callable[[User], Client]
) -> None:
    response = client_for(physician).post(
        reverse("records:order_new", args=[ward.treated.pk]),
        {"kind": "lab", "department": radiology.department.pk, "description": "CRP", "priority": "routine"},
    )
    assert response.status_code == 400
    assert b"radiology order to radiology" in response.content


def test_amendment_appends_and_keeps_the_original(
    ward: Ward, physician: User, nurse: User, client_for: Callable[[User], Client]
) -> None:
    client = client_for(physician)
    client.post(reverse("records:note_new", args=[ward.treated.pk]), {"kind": "progress", "text": "Original text."})
    note = ClinicalNote.objects.get()
    client.post(reverse("records:note_amend", args=[ward.treated.pk, note.pk]), {"text": "Correction: left side."})
    assert ClinicalNote.objects.count() == 2
    note.refresh_from_db()
    assert note.text == "Original text."
    assert ClinicalNote.objects.get(amends=note).text == "Correction: left side."
    # Someone else amends nothing: they write their own note.
    response = client_for(nurse).post(reverse("records:note_amend", args=[ward.treated.pk, note.pk]), {"text": "x"})
    assert response.status_code == 403


def test_physician_cannot_write_to_a_patient_they_do_not_treat(
    ward: Ward, physician: User, client_for: Callable[[User], Client]
) -> None:
    response = client_for(physician).post(
        reverse("records:note_new", args=[ward.other.pk]), {"kind": "progress", "text": "x"}
    )
    assert response.status_code == 404
    assert not ClinicalNote.objects.exists()


# --- Nurse ----------------------------------------------------------------------------------------


def test_nurse_records_vitals_without_a_fresh_code(
    ward: Ward, nurse: User, client_for: Callable[[User], Client]
) -> None:
    client = client_for(nurse)
    session = client.session
    session[VERIFIED_AT_KEY] = time.time() - 3600  # the last code was an hour ago; the session is active
    session.save()
    response = client.post(reverse("records:vitals_new", args=[ward.treated.pk]), {"heart_rate": "72", "spo2": "97"})
    assert response.status_code == 302
    assert Observation.objects.filter(patient=ward.treated, category="vital-signs").count() == 2
    # Viewing the chart, though, asks for a fresh code.
    assert client.get(reverse("records:chart", args=[ward.treated.pk]))["Location"].startswith(
        reverse("accounts:step_up")
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, b"at least one vital sign"),
        ({"heart_rate": "900"}, b"Heart rate must be between 20 and 250 /min."),
        ({"temperature": "hot"}, b"Enter a number"),
    ],
)
def test_bad_vitals_are_refused(
    ward: Ward, nurse: User, client_for: Callable[[User], Client], data: dict[str, str], message: bytes
) -> None:
    response = client_for(nurse).post(reverse("records:vitals_new", args=[ward.treated.pk]), data)
    assert response.status_code == 400
    assert message in response.content
    assert not Observation.objects.exists()


def test_nurse_records_a_dose_given(ward: Ward, nurse: User, client_for: Callable[[User], Client]) -> None:
    response = client_for(nurse).post(
        reverse("records:administer", args=[ward.treated.pk, ward.medication.pk]), {"dose": "75 mg"}
    )
    assert response.status_code == 302
    assert MedicationAdministration.objects.get().dose == "75 mg"


def test_ward_nurse_sees_admitted_patients_of_the_ward(
    ward: Ward, make_persona: Callable[..., User], client_for: Callable[[User], Client]
) -> None:
    from accounts.roles import Role

    colleague = make_persona(Role.NURSE, username="night_nurse")  # same ward, not on the care team
    assert client_for(colleague).get(reverse("records:chart", args=[ward.treated.pk])).status_code == 200
    assert client_for(colleague).get(reverse("records:chart", args=[ward.other.pk])).status_code == 404


# --- Radiology and laboratory ---------------------------------------------------------------------


def test_lab_enters_a_result_and_completes_the_order(
    ward: Ward, lab: User, client_for: Callable[[User], Client]
) -> None:
    client = client_for(lab)
    worklist = client.get(reverse("records:worklist"))
    assert [row.order.id for row in worklist.context["rows"]] == [ward.lab_order.pk]
    assert client.get(reverse("records:order_detail", args=[ward.lab_order.pk])).status_code == 200
    response = client.post(
        reverse("records:order_result", args=[ward.lab_order.pk]),
        {"display": "Troponin T", "value": "0.01", "unit": "ng/mL"},
    )
    assert response.status_code == 302
    assert Observation.objects.get(order=ward.lab_order).value == "0.01"
    assert client.post(reverse("records:order_complete", args=[ward.lab_order.pk])).status_code == 302
    ward.lab_order.refresh_from_db()
    assert ward.lab_order.status == Order.Status.COMPLETED
    # The completed order no longer opens the record: only its own work, read-only (issue 10).
    detail = client.get(reverse("records:order_detail", args=[ward.lab_order.pk]))
    assert detail.status_code == 200
    assert detail.context["read_only"] is True
    assert client.get(reverse("records:chart", args=[ward.treated.pk])).status_code == 404


def test_lab_sees_only_what_the_order_needs(ward: Ward, lab: User, client_for: Callable[[User], Client]) -> None:
    page = client_for(lab).get(reverse("records:order_detail", args=[ward.lab_order.pk]))
    assert b"Aspirin" not in page.content  # medications are not the lab's business
    assert client_for(lab).get(reverse("records:order_detail", args=[ward.radiology_order.pk])).status_code == 404


@pytest.fixture
def media(tmp_path: object) -> object:
    with override_settings(MEDIA_ROOT=tmp_path):
        yield tmp_path


def test_radiology_uploads_an_image_stored_encrypted(
    ward: Ward, radiology: User, physician: User, client_for: Callable[[User], Client], media: object
) -> None:
    png = tiny_png(7)
    upload = SimpleUploadedFile("scan.png", png, content_type="image/png")
    response = client_for(radiology).post(
        reverse("records:order_upload", args=[ward.radiology_order.pk]), {"file": upload, "description": "PA view"}
    )
    assert response.status_code == 302
    attachment = Attachment.objects.get()
    stored = b"".join(p.read_bytes() for p in media.rglob("*") if p.is_file())  # type: ignore[attr-defined]
    assert png[16:64] not in stored
    assert b"".join(open_decrypted(attachment.storage_name, row_uid=attachment.row_uid)) == png
    download = client_for(physician).get(reverse("records:attachment_download", args=[attachment.pk]))
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == png


def test_a_download_whose_file_does_not_match_its_recorded_hash_is_aborted(
    ward: Ward, radiology: User, physician: User, client_for: Callable[[User], Client], media: object
) -> None:
    upload = SimpleUploadedFile("scan.png", tiny_png(7), content_type="image/png")
    client_for(radiology).post(
        reverse("records:order_upload", args=[ward.radiology_order.pk]), {"file": upload, "description": "PA view"}
    )
    attachment = Attachment.objects.get()
    attachment.sha256 = "0" * 64  # the recorded digest no longer matches the stored file
    attachment.save(update_fields=["sha256"])
    download = client_for(physician).get(reverse("records:attachment_download", args=[attachment.pk]))
    with pytest.raises(DecryptionError, match="integrity check"):
        b"".join(download.streaming_content)


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [(b"MZ\x90\x00 this is an exe", "scan.png", b"not accepted"), (b"plain text", "notes.txt", b"not accepted")],
)
def test_wrong_file_types_are_refused(
    ward: Ward,
    radiology: User,
    client_for: Callable[[User], Client],
    media: object,
    content: bytes,
    name: str,
    message: bytes,
) -> None:
    upload = SimpleUploadedFile(name, content, content_type="image/png")
    response = client_for(radiology).post(
        reverse("records:order_upload", args=[ward.radiology_order.pk]), {"file": upload}
    )
    assert response.status_code == 400
    assert message in response.content
    assert not Attachment.objects.exists()


def test_upload_over_the_limit_is_refused_with_nothing_left_behind(
    ward: Ward, radiology: User, client_for: Callable[[User], Client], media: object
) -> None:
    with override_settings(ATTACHMENT_MAX_BYTES=1000):
        upload = SimpleUploadedFile("big.png", tiny_png(1) + b"\x00" * 5000, content_type="image/png")
        response = client_for(radiology).post(
            reverse("records:order_upload", args=[ward.radiology_order.pk]), {"file": upload}
        )
    assert response.status_code == 400
    assert b"larger than the limit" in response.content
    assert not Attachment.objects.exists()
    assert not [p for p in media.rglob("*") if p.is_file()]  # type: ignore[attr-defined]


# --- Patient --------------------------------------------------------------------------------------


def test_patient_sees_their_own_summary_only(
    ward: Ward, patient_user: User, client_for: Callable[[User], Client]
) -> None:
    client = client_for(patient_user)
    page = client.get(reverse("records:my_record"))
    assert page.status_code == 200
    assert b"Aspirin 75 mg" in page.content
    assert client.get(reverse("records:chart", args=[ward.treated.pk])).status_code == 403
    assert client.get(reverse("records:chart", args=[ward.other.pk])).status_code == 403


def test_patient_without_a_linked_record_gets_404(
    make_persona: Callable[..., User], client_for: Callable[[User], Client]
) -> None:
    from accounts.roles import Role

    stranger = make_persona(Role.PATIENT, username="unlinked")
    assert client_for(stranger).get(reverse("records:my_record")).status_code == 404


def test_allergy_and_administration_models_hold_ciphertext(ward: Ward, nurse: User, physician: User) -> None:
    from records.services import allergy_record, medication_administer

    allergy_record(actor=nurse, patient_id=ward.treated.pk, substance="Peanut", reaction="Swelling")
    medication_administer(
        actor=nurse, patient_id=ward.treated.pk, medication_id=ward.medication.pk, dose="75 mg", note="With food"
    )
    with connection.cursor() as cursor:
        for table in (
            "records_allergy",
            "records_medicationadministration",
            "records_medication",
            "records_order",
            "records_encounter",
        ):
            cursor.execute(f"SELECT * FROM {table}")  # noqa: S608 - fixed table names
            dump = " ".join(str(v) for row in cursor.fetchall() for v in row)
            for value in (
                "Peanut",
                "Swelling",
                "75 mg",
                "With food",
                "Aspirin",
                "Chest X-ray",
                "Troponin",
                "Chest pain",
            ):
                assert value not in dump, (table, value)
    assert Allergy.objects.get().substance == "Peanut"
    assert Medication.objects.count() == 1
    assert Department.objects.exists()


def test_a_rejected_form_keeps_the_banner_with_the_patients_allergies(
    ward: Ward, nurse: User, physician: User, client_for: Callable[[User], Client]
) -> None:
    # The form comes back about the right patient: name, MRN and allergies, as on the chart.
    from records.services import allergy_record

    allergy_record(actor=physician, patient_id=ward.treated.pk, substance="Latex", severity="severe")
    response = client_for(nurse).post(reverse("records:vitals_new", args=[ward.treated.pk]), {"heart_rate": "900"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "TREATEDSURNAME" in html
    assert 'data-testid="allergy-strip"' in html
    assert "Latex (severe)" in html


def test_the_banner_says_when_no_allergy_is_recorded(
    ward: Ward, nurse: User, client_for: Callable[[User], Client]
) -> None:
    html = client_for(nurse).get(reverse("records:chart", args=[ward.treated.pk])).content.decode()
    assert "<strong>Allergies:</strong> none recorded" in html
