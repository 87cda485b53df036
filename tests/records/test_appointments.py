"""Appointments: booking (refusing the past, overlaps, bad durations), the day schedule, check-in that
opens the encounter, cancel; 404 outside the desk's schedule or for another patient, 409 twice, 403 for
roles that may not, and never a patient value in a URL."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from urllib.parse import unquote

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import Department, User
from accounts.roles import Role
from audit.models import AccessEvent, ChangeEvent
from records.models import Appointment, Encounter, Patient
from records.services import RecordNotFound, appointment_book, appointment_cancel, appointment_check_in
from tests.factories import DepartmentFactory, PatientFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def clinic() -> Department:
    return DepartmentFactory(code="clinic-cardio", name="Cardiology clinic", kind=Department.Kind.OUTPATIENT)


@pytest.fixture
def other_clinic() -> Department:
    return DepartmentFactory(code="clinic-derm", name="Dermatology clinic", kind=Department.Kind.OUTPATIENT)


@pytest.fixture
def patient() -> Patient:
    return PatientFactory(family_name="Bookedsurname", given_name="Bea", mrn="APPT-0001")


def clinic_desk(department: Department) -> User:
    """A front desk at a clinic's reception: it works that clinic's schedule only."""
    return UserFactory(role=Role.FRONT_DESK, username="clinic-desk", department=department)


def soon(hours: float = 2) -> datetime.datetime:
    return (timezone.now() + datetime.timedelta(hours=hours)).replace(second=0, microsecond=0)


def book(
    actor: User, patient: Patient, department: Department, *, at: datetime.datetime | None = None, **kw: object
) -> Appointment:
    return appointment_book(
        actor=actor,
        patient_id=patient.pk,
        department_id=department.pk,
        starts_at=at or soon(),
        duration_minutes=int(kw.pop("duration_minutes", 20)),
        **kw,
    )


def form(department: Department, at: datetime.datetime, **extra: object) -> dict[str, object]:
    local = timezone.localtime(at)
    return {"department": department.pk, "starts_at": local.strftime("%Y-%m-%dT%H:%M"), "duration_minutes": 20, **extra}


# --- Booking -------------------------------------------------------------------------------------


def test_front_desk_books_from_the_patient_page_and_lands_on_the_schedule(
    front_desk: User, patient: Patient, clinic: Department, physician: User, client_for: Callable[[User], Client]
) -> None:
    client = client_for(front_desk)
    page = client.get(reverse("records:appointment_new", args=[patient.pk]))
    assert page.status_code == 200
    assert "BOOKEDSURNAME" in page.content.decode()  # the banner
    at = soon(3)
    response = client.post(
        reverse("records:appointment_new", args=[patient.pk]),
        form(clinic, at, clinician=physician.pk, reason="Palpitations"),
    )
    assert response.status_code == 302
    appointment = Appointment.objects.get(patient=patient)
    assert (appointment.department_id, appointment.clinician_id, appointment.booked_by_id) == (
        clinic.pk,
        physician.pk,
        front_desk.pk,
    )
    assert appointment.status == Appointment.Status.BOOKED
    assert appointment.reason == "Palpitations"
    location = unquote(response["Location"])
    assert location.startswith(reverse("records:schedule"))
    for value in (patient.mrn, patient.family_name, str(patient.birth_date)):
        assert value not in location
    change = ChangeEvent.objects.get(object_type="Appointment", object_id=appointment.pk)
    assert (change.actor_id, change.patient_id, change.action) == (front_desk.pk, patient.pk, "create")
    assert "Palpitations" not in str(change.fields)


def test_registration_page_links_to_booking(
    front_desk: User, patient: Patient, client_for: Callable[[User], Client]
) -> None:
    html = client_for(front_desk).get(reverse("records:registration_detail", args=[patient.pk])).content.decode()
    assert reverse("records:appointment_new", args=[patient.pk]) in html


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"starts_at": "2001-01-01T09:00"}, "in the past"),
        ({"duration_minutes": 0}, "at least one minute"),
        ({"duration_minutes": -15}, "at least one minute"),
    ],
    ids=["past", "zero-duration", "negative-duration"],
)
def test_booking_refuses_bad_times_with_a_message(
    change: dict[str, object],
    message: str,
    front_desk: User,
    patient: Patient,
    clinic: Department,
    client_for: Callable[[User], Client],
) -> None:
    response = client_for(front_desk).post(
        reverse("records:appointment_new", args=[patient.pk]), {**form(clinic, soon()), **change}
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Appointment.objects.exists()


def test_booking_refuses_an_overlap_with_the_same_clinician(
    front_desk: User,
    patient: Patient,
    clinic: Department,
    physician: User,
    outsider: User,
    client_for: Callable[[User], Client],
) -> None:
    at = soon(4)
    book(front_desk, patient, clinic, at=at, clinician=physician, duration_minutes=30)
    other = PatientFactory()
    response = client_for(front_desk).post(
        reverse("records:appointment_new", args=[other.pk]),
        form(clinic, at + datetime.timedelta(minutes=15), clinician=physician.pk),
    )
    assert response.status_code == 400
    assert "already has an appointment at this time" in response.content.decode()
    # Right after the first one ends, or with another physician, the slot is free.
    book(front_desk, other, clinic, at=at + datetime.timedelta(minutes=30), clinician=physician)
    book(front_desk, other, clinic, at=at + datetime.timedelta(minutes=10), clinician=outsider)
    assert Appointment.objects.count() == 3


def test_a_cancelled_appointment_frees_its_slot(
    front_desk: User, patient: Patient, clinic: Department, physician: User
) -> None:
    at = soon(5)
    first = book(front_desk, patient, clinic, at=at, clinician=physician)
    appointment_cancel(actor=front_desk, patient_id=patient.pk, appointment_id=first.pk)
    assert book(front_desk, patient, clinic, at=at, clinician=physician).pk != first.pk


def test_booking_refuses_a_clinician_who_is_not_a_physician(
    front_desk: User, patient: Patient, clinic: Department, nurse: User
) -> None:
    with pytest.raises(ValidationError) as error:
        book(front_desk, patient, clinic, clinician=nurse)
    assert "must be a physician" in str(error.value)


def test_a_clinic_desk_books_only_into_its_own_department(
    make_persona: Callable[..., User], patient: Patient, clinic: Department, other_clinic: Department
) -> None:
    desk = clinic_desk(clinic)
    book(desk, patient, clinic)
    with pytest.raises(ValidationError) as error:
        book(desk, patient, other_clinic)
    assert "own department" in str(error.value)


def test_booking_an_unknown_patient_is_not_found(front_desk: User, clinic: Department) -> None:
    with pytest.raises(RecordNotFound):
        appointment_book(
            actor=front_desk, patient_id=999_999, department_id=clinic.pk, starts_at=soon(), duration_minutes=10
        )


@pytest.mark.parametrize("role", [Role.PHYSICIAN, Role.NURSE, Role.EMS, Role.SECURITY, Role.PATIENT])
def test_roles_without_booking_may_not_book(
    role: Role,
    make_persona: Callable[..., User],
    patient: Patient,
    clinic: Department,
    client_for: Callable[[User], Client],
) -> None:
    user = make_persona(role)
    assert (
        client_for(user).post(reverse("records:appointment_new", args=[patient.pk]), form(clinic, soon())).status_code
        == 403
    )
    with pytest.raises(PermissionDenied):
        book(user, patient, clinic)
    assert not Appointment.objects.exists()


# --- The schedule --------------------------------------------------------------------------------


def test_schedule_lists_the_day_and_records_the_list(
    front_desk: User, patient: Patient, clinic: Department, client_for: Callable[[User], Client]
) -> None:
    at = soon(1)
    appointment = book(front_desk, patient, clinic, at=at, reason="Follow-up")
    page = client_for(front_desk).get(
        reverse("records:schedule"), {"day": timezone.localdate(at).isoformat(), "department": clinic.pk}
    )
    assert page.status_code == 200
    html = page.content.decode()
    assert "BOOKEDSURNAME" in html
    assert "Follow-up" in html
    assert reverse("records:appointment_check_in", args=[patient.pk, appointment.pk]) in html
    event = AccessEvent.objects.get(actor_id=front_desk.pk, action="list", category="demographics")
    assert event.patient_id == patient.pk
    assert event.detail == {"list": "schedule"}


def test_schedule_of_another_day_does_not_show_today(
    front_desk: User, patient: Patient, clinic: Department, client_for: Callable[[User], Client]
) -> None:
    at = soon(1)
    book(front_desk, patient, clinic, at=at)
    tomorrow = timezone.localdate(at) + datetime.timedelta(days=1)
    page = client_for(front_desk).get(reverse("records:schedule"), {"day": tomorrow.isoformat()})
    assert "BOOKEDSURNAME" not in page.content.decode()


def test_schedule_query_count_does_not_grow_with_the_day(
    front_desk: User,
    clinic: Department,
    physician: User,
    client_for: Callable[[User], Client],
    django_assert_max_num_queries: Callable[..., object],
) -> None:
    base = soon(1)
    for n in range(12):
        book(front_desk, PatientFactory(), clinic, at=base + datetime.timedelta(minutes=20 * n), clinician=physician)
    client = client_for(front_desk)
    # Session, user, device, department, the desk's departments (twice), ids, the audited list access
    # (chain head and event, in savepoints), the rows with patients and clinicians joined, the session.
    with django_assert_max_num_queries(26):
        page = client.get(reverse("records:schedule"), {"day": timezone.localdate(base).isoformat()})
    assert page.status_code == 200


def test_bad_schedule_parameters_are_a_400(front_desk: User, client_for: Callable[[User], Client]) -> None:
    client = client_for(front_desk)
    assert client.get(reverse("records:schedule"), {"day": "not-a-date"}).status_code == 400
    assert client.get(reverse("records:schedule"), {"department": "abc"}).status_code == 400


def test_a_clinic_desk_cannot_open_another_departments_schedule(
    make_persona: Callable[..., User],
    clinic: Department,
    other_clinic: Department,
    patient: Patient,
    front_desk: User,
    client_for: Callable[[User], Client],
) -> None:
    book(front_desk, patient, other_clinic)
    desk = clinic_desk(clinic)
    response = client_for(desk).get(reverse("records:schedule"), {"department": other_clinic.pk})
    assert response.status_code in (400, 404)  # not a choice of its form, and refused by the selector
    own = client_for(desk).get(reverse("records:schedule"))
    assert own.status_code == 200
    assert "BOOKEDSURNAME" not in own.content.decode()


def test_a_physician_sees_only_their_own_appointments(
    front_desk: User,
    patient: Patient,
    clinic: Department,
    physician: User,
    outsider: User,
    client_for: Callable[[User], Client],
) -> None:
    mine_at = soon(1)
    book(front_desk, patient, clinic, at=mine_at, clinician=physician)
    book(front_desk, PatientFactory(family_name="Notminesurname"), clinic, at=mine_at, clinician=outsider)
    html = (
        client_for(physician)
        .get(reverse("records:schedule"), {"day": timezone.localdate(mine_at).isoformat()})
        .content.decode()
    )
    assert "BOOKEDSURNAME" in html
    assert "NOTMINESURNAME" not in html
    assert "Check in" not in html


# --- Check-in and cancel -------------------------------------------------------------------------


def test_check_in_opens_the_outpatient_encounter_and_links_it(
    front_desk: User, patient: Patient, clinic: Department, physician: User, client_for: Callable[[User], Client]
) -> None:
    appointment = book(front_desk, patient, clinic, clinician=physician, reason="Chest pain review")
    response = client_for(front_desk).post(reverse("records:appointment_check_in", args=[patient.pk, appointment.pk]))
    assert response.status_code == 302
    appointment.refresh_from_db()
    assert appointment.status == Appointment.Status.CHECKED_IN
    encounter = Encounter.objects.get(pk=appointment.encounter_id)
    assert (encounter.patient_id, encounter.kind, encounter.status) == (
        patient.pk,
        Encounter.Kind.AMBULATORY,
        Encounter.Status.IN_PROGRESS,
    )
    assert (encounter.department_id, encounter.attending_id, encounter.reason) == (
        clinic.pk,
        physician.pk,
        "Chest pain review",
    )
    actions = set(ChangeEvent.objects.filter(patient_id=patient.pk).values_list("object_type", "action"))
    assert {("Encounter", "create"), ("Appointment", "check_in")} <= actions


def test_a_second_check_in_is_a_409_and_opens_nothing(
    front_desk: User, patient: Patient, clinic: Department, client_for: Callable[[User], Client]
) -> None:
    appointment = book(front_desk, patient, clinic)
    url = reverse("records:appointment_check_in", args=[patient.pk, appointment.pk])
    client = client_for(front_desk)
    assert client.post(url).status_code == 302
    again = client.post(url)
    assert again.status_code == 409
    assert "already checked in" in again.content.decode()
    assert Encounter.objects.filter(patient=patient).count() == 1


def test_checking_in_a_cancelled_appointment_is_a_409(
    front_desk: User, patient: Patient, clinic: Department, client_for: Callable[[User], Client]
) -> None:
    appointment = book(front_desk, patient, clinic)
    client = client_for(front_desk)
    assert client.post(reverse("records:appointment_cancel", args=[patient.pk, appointment.pk])).status_code == 302
    response = client.post(reverse("records:appointment_check_in", args=[patient.pk, appointment.pk]))
    assert response.status_code == 409
    assert "cancelled" in response.content.decode()
    assert client.post(reverse("records:appointment_cancel", args=[patient.pk, appointment.pk])).status_code == 409
    assert not Encounter.objects.filter(patient=patient).exists()


def test_an_appointment_of_another_patient_than_the_urls_is_a_404(
    front_desk: User, patient: Patient, clinic: Department, client_for: Callable[[User], Client]
) -> None:
    appointment = book(front_desk, patient, clinic)
    other = PatientFactory()
    client = client_for(front_desk)
    for name in ("appointment_check_in", "appointment_cancel"):
        assert client.post(reverse(f"records:{name}", args=[other.pk, appointment.pk])).status_code == 404
    appointment.refresh_from_db()
    assert appointment.status == Appointment.Status.BOOKED


def test_an_appointment_of_another_departments_schedule_is_a_404(
    make_persona: Callable[..., User],
    front_desk: User,
    patient: Patient,
    clinic: Department,
    other_clinic: Department,
    client_for: Callable[[User], Client],
) -> None:
    appointment = book(front_desk, patient, other_clinic)
    desk = clinic_desk(clinic)
    client = client_for(desk)
    for name in ("appointment_check_in", "appointment_cancel"):
        assert client.post(reverse(f"records:{name}", args=[patient.pk, appointment.pk])).status_code == 404
    with pytest.raises(RecordNotFound):
        appointment_check_in(actor=desk, patient_id=patient.pk, appointment_id=appointment.pk)


@pytest.mark.parametrize("role", [Role.PHYSICIAN, Role.NURSE, Role.LAB, Role.COMPLIANCE])
def test_roles_without_booking_may_not_check_in_or_cancel(
    role: Role,
    make_persona: Callable[..., User],
    front_desk: User,
    patient: Patient,
    clinic: Department,
    client_for: Callable[[User], Client],
) -> None:
    appointment = book(front_desk, patient, clinic)
    client = client_for(make_persona(role, username=f"other-{role}"))
    for name in ("appointment_check_in", "appointment_cancel"):
        assert client.post(reverse(f"records:{name}", args=[patient.pk, appointment.pk])).status_code == 403
    assert client.get(reverse("records:appointment_check_in", args=[patient.pk, appointment.pk])).status_code in (
        403,
        405,
    )
    appointment.refresh_from_db()
    assert appointment.status == Appointment.Status.BOOKED


def test_check_in_and_cancel_take_post_only(
    front_desk: User, patient: Patient, clinic: Department, client_for: Callable[[User], Client]
) -> None:
    appointment = book(front_desk, patient, clinic)
    client = client_for(front_desk)
    for name in ("appointment_check_in", "appointment_cancel"):
        assert client.get(reverse(f"records:{name}", args=[patient.pk, appointment.pk])).status_code == 405


def test_appointment_urls_carry_no_patient_values(
    front_desk: User, patient: Patient, clinic: Department, client_for: Callable[[User], Client]
) -> None:
    import re

    at = soon(1)
    book(front_desk, patient, clinic, at=at)
    html = (
        client_for(front_desk)
        .get(reverse("records:schedule"), {"day": timezone.localdate(at).isoformat()})
        .content.decode()
    )
    targets = re.findall(r'(?:href|action)="([^"]*)"', html)
    assert targets
    for target in targets:
        for value in (patient.mrn, patient.family_name, patient.given_name, patient.birth_date.isoformat()):
            assert value.lower() not in unquote(target).lower(), target
