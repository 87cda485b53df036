"""Each role's dashboard shows that role's work of today, and nothing from another department or
another physician: the physician's new results and pending orders, the nurse's ward, due medications
and missing vitals, the worklist counts by urgency, the front desk's arrivals and appointments.
Query counts do not grow with the rows shown, and no name shows without a fresh step-up."""

from __future__ import annotations

import datetime
from collections.abc import Callable

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import Department, User
from accounts.roles import Role
from audit.models import AccessEvent
from records.models import Encounter, Medication, MedicationAdministration, Observation, Order, Patient
from records.selectors import DUE_WITHIN, VITALS_INTERVAL, due_medications
from records.services import (
    appointment_book,
    encounter_admit,
    medication_administer,
    medication_prescribe,
    observation_record,
    order_place,
)
from tests.conftest import make_step_up_stale
from tests.factories import DepartmentFactory, PatientFactory, assign
from tests.records.conftest import Ward

pytestmark = pytest.mark.django_db

HOUR = datetime.timedelta(hours=1)


def dashboard(client: Client) -> str:
    response = client.get(reverse("accounts:dashboard"))
    assert response.status_code == 200
    return response.content.decode()


def section(html: str, testid: str) -> str:
    """The HTML of one panel (by its data-testid), so a name is looked for in the right place."""
    start = html.index(f'data-testid="{testid}"')
    return html[start : html.index("</section>", start)]


def admitted(patient: Patient, department: Department | None, *, location: str = "", hours_ago: float = 3) -> Encounter:
    encounter = encounter_admit(
        actor=None,
        patient_id=patient.pk,
        kind=Encounter.Kind.INPATIENT,
        department=department,
        starts_at=timezone.now() - datetime.timedelta(hours=hours_ago),
    )
    if location:
        encounter.location = location
        encounter.save()
    return encounter


def order(physician: User, patient: Patient, department: Department, description: str, **kw: str) -> Order:
    return order_place(
        actor=physician,
        patient_id=patient.pk,
        kind=Order.Kind.LAB if department.kind == Department.Kind.LAB else Order.Kind.RADIOLOGY,
        department=department,
        description=description,
        **kw,
    )


def completed(o: Order, *, hours_ago: float) -> None:
    Order.objects.filter(pk=o.pk).update(
        status=Order.Status.COMPLETED, completed_at=timezone.now() - datetime.timedelta(hours=hours_ago)
    )


def vitals(nurse: User, patient: Patient, *, hours_ago: float) -> None:
    observation_record(
        actor=nurse,
        patient_id=patient.pk,
        category=Observation.Category.VITAL_SIGNS,
        display="Heart rate",
        value="72",
        unit="/min",
        loinc_code="8867-4",
        effective_at=timezone.now() - datetime.timedelta(hours=hours_ago),
    )


def prescribe(physician: User, patient: Patient, name: str, frequency: str, *, hours_ago: float) -> Medication:
    medication = medication_prescribe(
        actor=physician, patient_id=patient.pk, display=name, dosage="1 tablet", frequency=frequency
    )
    Medication.objects.filter(pk=medication.pk).update(
        prescribed_at=timezone.now() - datetime.timedelta(hours=hours_ago)
    )
    return medication


# --- The capability card and promises are gone ------------------------------------------------------


@pytest.mark.parametrize("persona", list(Role), indirect=True)
def test_no_dashboard_lists_capability_names_or_promises(persona: User, client_for: Callable[[User], Client]) -> None:
    html = dashboard(client_for(persona))
    assert "What your role allows" not in html
    assert "will be" not in html
    assert "De-identified datasets" not in html


def test_researcher_dashboard_says_what_can_be_done_now(researcher: User, client_for: Callable[[User], Client]) -> None:
    html = dashboard(client_for(researcher))
    assert reverse("accounts:password_change") in html


def test_my_record_promises_no_access_log(ward: Ward, patient_user: User, client_for: Callable[[User], Client]) -> None:
    html = client_for(patient_user).get(reverse("records:my_record")).content.decode()
    assert "Who opened your record" not in html


# --- Physician ---------------------------------------------------------------------------------------


def test_physician_sees_new_results_of_own_orders_of_the_last_day_newest_first(
    ward: Ward, physician: User, outsider: User, lab: User, client_for: Callable[[User], Client]
) -> None:
    assert lab.department is not None
    older = order(physician, ward.treated, lab.department, "Potassium level")
    newer = order(physician, ward.treated, lab.department, "Sodium level")
    stale = order(physician, ward.treated, lab.department, "Ferritin level")
    assign(outsider, ward.treated)
    theirs = order(outsider, ward.treated, lab.department, "Magnesium level")
    completed(older, hours_ago=5)
    completed(newer, hours_ago=1)
    completed(stale, hours_ago=30)
    completed(theirs, hours_ago=1)
    panel = section(dashboard(client_for(physician)), "new-results")
    assert panel.index("Sodium level") < panel.index("Potassium level")
    assert "Ferritin" not in panel
    assert "Magnesium" not in panel
    # One event for the patient on the whole dashboard, naming this list among the others they are in.
    (event,) = AccessEvent.objects.filter(actor_id=physician.pk, patient_id=ward.treated.pk, action="list")
    assert event.detail["list"] == "dashboard"
    assert "new_results" in event.detail["lists"]
    assert {"demographics", "orders"} <= set(event.sections)


def test_physician_pending_orders_oldest_first_with_priority(
    ward: Ward, physician: User, outsider: User, radiology: User, client_for: Callable[[User], Client]
) -> None:
    assert radiology.department is not None
    assign(outsider, ward.treated)
    order(outsider, ward.treated, radiology.department, "Not my CT")
    urgent = order(physician, ward.treated, radiology.department, "CT head", priority=Order.Priority.STAT)
    Order.objects.filter(pk=ward.radiology_order.pk).update(ordered_at=timezone.now() - 5 * HOUR)
    Order.objects.filter(pk=urgent.pk).update(ordered_at=timezone.now() - HOUR)
    panel = section(dashboard(client_for(physician)), "pending-orders")
    assert panel.index("Chest X-ray") < panel.index("CT head")
    assert "Immediate (stat)" in panel
    assert "Not my CT" not in panel


def test_physician_sees_no_orders_of_a_patient_they_no_longer_treat(
    physician: User, lab: User, client_for: Callable[[User], Client]
) -> None:
    assert lab.department is not None
    patient = PatientFactory(family_name="Formersurname")
    assignment = assign(physician, patient)
    order(physician, patient, lab.department, "Lipids")
    assignment.ends_at = timezone.now() - datetime.timedelta(minutes=1)
    assignment.save()
    html = dashboard(client_for(physician))
    assert "FORMERSURNAME" not in html


# --- Nurse -------------------------------------------------------------------------------------------


@pytest.fixture
def other_ward() -> Department:
    return DepartmentFactory(code="ward-b", name="Ward B", kind=Department.Kind.WARD)


def test_nurse_ward_list_shows_own_ward_inpatients_with_bed_and_admission(
    ward: Ward, nurse: User, other_ward: Department, client_for: Callable[[User], Client]
) -> None:
    ward.encounter.location = "Bed 12"
    ward.encounter.save()
    admitted(ward.other, other_ward, location="Bed 3")
    panel = section(dashboard(client_for(nurse)), "ward-list")
    assert "TREATEDSURNAME" in panel
    assert "Bed 12" in panel
    assert timezone.localtime(ward.encounter.starts_at).strftime("%Y-%m-%d %H:%M") in panel
    assert "OTHERSURNAME" not in panel


def test_due_medications_follow_the_schedule(ward: Ward, nurse: User, physician: User, other_ward: Department) -> None:
    f = Medication.Frequency
    prescribe(physician, ward.treated, "Overdue q4h", f.EVERY_4_HOURS, hours_ago=5)
    prescribe(physician, ward.treated, "Due soon q6h", f.EVERY_6_HOURS, hours_ago=5.5)
    prescribe(physician, ward.treated, "Later q12h", f.EVERY_12_HOURS, hours_ago=2)
    prescribe(physician, ward.treated, "When needed", f.AS_NEEDED, hours_ago=30)
    given_once = prescribe(physician, ward.treated, "Single dose given", f.ONCE, hours_ago=3)
    prescribe(physician, ward.treated, "Single dose not given", f.ONCE, hours_ago=3)
    daily = prescribe(physician, ward.treated, "Daily given", f.DAILY, hours_ago=30)
    for medication in (given_once, daily):
        medication_administer(actor=nurse, patient_id=ward.treated.pk, medication_id=medication.pk, dose="1")
    stopped = prescribe(physician, ward.treated, "Stopped q4h", f.EVERY_4_HOURS, hours_ago=9)
    Medication.objects.filter(pk=stopped.pk).update(status=Medication.Status.STOPPED)
    # Another ward's patient: not this nurse's round.
    assign(physician, ward.other)
    admitted(ward.other, other_ward)
    prescribe(physician, ward.other, "Other ward q4h", f.EVERY_4_HOURS, hours_ago=9)

    rows = due_medications(actor=nurse, limit=20)
    names = [r.medication for r in rows]
    assert names == ["Single dose not given", "Overdue q4h", "Due soon q6h"]
    assert rows[1].overdue
    assert not rows[2].overdue
    assert rows[2].due_at <= timezone.now() + DUE_WITHIN


def test_a_dose_given_moves_the_next_one_on(ward: Ward, nurse: User, physician: User) -> None:
    medication = prescribe(physician, ward.treated, "Paracetamol", Medication.Frequency.EVERY_4_HOURS, hours_ago=5)
    assert [r.medication for r in due_medications(actor=nurse)] == ["Paracetamol"]
    medication_administer(actor=nurse, patient_id=ward.treated.pk, medication_id=medication.pk, dose="1 g")
    assert due_medications(actor=nurse) == []
    MedicationAdministration.objects.filter(medication=medication).update(administered_at=timezone.now() - 3.5 * HOUR)
    assert [r.medication for r in due_medications(actor=nurse)] == ["Paracetamol"]


def test_due_medications_panel_on_the_nurse_dashboard(
    ward: Ward, nurse: User, physician: User, client_for: Callable[[User], Client]
) -> None:
    prescribe(physician, ward.treated, "Amoxicillin 500 mg", Medication.Frequency.EVERY_8_HOURS, hours_ago=9)
    panel = section(dashboard(client_for(nurse)), "due-medications")
    assert "Amoxicillin 500 mg" in panel
    assert "Overdue" in panel
    assert "TREATEDSURNAME" in panel
    (event,) = AccessEvent.objects.filter(actor_id=nurse.pk, patient_id=ward.treated.pk, action="list")
    assert "due_medications" in event.detail["lists"]
    assert event.explanation == "ward"
    assert {"demographics", "medications"} <= set(event.sections)


def test_missing_vitals_lists_ward_inpatients_without_recent_vitals(
    ward: Ward, nurse: User, other_ward: Department, client_for: Callable[[User], Client]
) -> None:
    second = PatientFactory(family_name="Measuredsurname")
    admitted(second, nurse.department)
    vitals(nurse, second, hours_ago=1)
    old = VITALS_INTERVAL.total_seconds() / 3600 + 1
    vitals(nurse, ward.treated, hours_ago=old)
    admitted(ward.other, other_ward)
    panel = section(dashboard(client_for(nurse)), "missing-vitals")
    assert "TREATEDSURNAME" in panel
    assert "last taken" in panel
    assert "MEASUREDSURNAME" not in panel
    assert "OTHERSURNAME" not in panel
    vitals(nurse, ward.treated, hours_ago=0)
    assert "TREATEDSURNAME" not in section(dashboard(client_for(nurse)), "missing-vitals")


def test_prescription_form_takes_the_frequency_and_the_chart_shows_it(
    ward: Ward, physician: User, client_for: Callable[[User], Client]
) -> None:
    client = client_for(physician)
    url = reverse("records:prescription_new", args=[ward.treated.pk])
    refused = client.post(url, {"display": "Ibuprofen 400 mg", "dosage": "1 tablet"})
    assert refused.status_code == 400
    assert (
        client.post(url, {"display": "Ibuprofen 400 mg", "dosage": "1 tablet", "frequency": "q8h"}).status_code == 302
    )
    medication = Medication.objects.filter(patient=ward.treated).order_by("-id").first()
    assert medication is not None
    assert medication.frequency == "q8h"
    assert "Every 8 hours" in client.get(reverse("records:chart", args=[ward.treated.pk])).content.decode()


# --- Radiology and the laboratory --------------------------------------------------------------------


def test_worklist_counts_by_urgency_for_the_own_department_only(
    ward: Ward, physician: User, radiology: User, client_for: Callable[[User], Client]
) -> None:
    assert radiology.department is not None
    order(physician, ward.treated, radiology.department, "CT chest", priority=Order.Priority.STAT)
    order(physician, ward.treated, radiology.department, "MRI knee", priority=Order.Priority.URGENT)
    order(physician, ward.treated, radiology.department, "US abdomen", priority=Order.Priority.URGENT)
    elsewhere = DepartmentFactory(code="rad-2", name="Radiology 2", kind=Department.Kind.RADIOLOGY)
    order(physician, ward.treated, elsewhere, "Elsewhere", priority=Order.Priority.STAT)
    done = order(physician, ward.treated, radiology.department, "Done", priority=Order.Priority.STAT)
    completed(done, hours_ago=1)
    # A stale step-up: the counts name nobody, so they still show; the names do not.
    html = dashboard(make_step_up_stale(client_for(radiology)))
    panel = section(html, "worklist-counts")
    assert "Immediate (stat)</strong>: 1" in panel
    assert "Urgent</strong>: 2" in panel
    assert "Routine: 1" in panel  # the ward's chest X-ray
    assert "TREATEDSURNAME" not in html
    assert not AccessEvent.objects.filter(actor_id=radiology.pk).exists()


# --- Front desk --------------------------------------------------------------------------------------


def test_front_desk_sees_todays_arrivals_and_appointments(
    ward: Ward, front_desk: User, physician: User, client_for: Callable[[User], Client]
) -> None:
    clinic = DepartmentFactory(code="clinic-1", name="Clinic One", kind=Department.Kind.OUTPATIENT)
    yesterday = PatientFactory(family_name="Yesterdaysurname")
    encounter_admit(
        actor=None,
        patient_id=yesterday.pk,
        kind=Encounter.Kind.EMERGENCY,
        department=clinic,
        starts_at=timezone.now() - datetime.timedelta(days=2),
    )
    arriving = PatientFactory(family_name="Arrivingsurname")
    encounter_admit(actor=None, patient_id=arriving.pk, kind=Encounter.Kind.EMERGENCY, department=clinic)
    booked = PatientFactory(family_name="Bookedtodaysurname")
    at = timezone.now() + datetime.timedelta(minutes=30)
    if timezone.localdate(at) != timezone.localdate():  # just before midnight: keep it today
        at = timezone.now()
    appointment_book(actor=front_desk, patient_id=booked.pk, department_id=clinic.pk, starts_at=at, duration_minutes=15)
    html = dashboard(client_for(front_desk))
    arrivals = section(html, "arrivals-today")
    assert "ARRIVINGSURNAME" in arrivals
    assert "YESTERDAYSURNAME" not in arrivals
    assert "BOOKEDTODAYSURNAME" in section(html, "appointments-today")


def test_front_desk_finds_a_patient_by_surname_from_the_dashboard(
    front_desk: User, client_for: Callable[[User], Client]
) -> None:
    patient = PatientFactory(family_name="Deskfoundsurname")
    client = client_for(front_desk)
    html = dashboard(client)
    assert 'name="family_name"' in html  # the panel offers the surname, not only the MRN
    response = client.post(reverse("records:search"), {"family_name": "deskfoundsurname"})
    assert response.status_code == 200
    assert [row.patient.id for row in response.context["results"].rows] == [patient.pk]


def test_front_desk_with_a_stale_step_up_sees_no_names(front_desk: User, client_for: Callable[[User], Client]) -> None:
    clinic = DepartmentFactory(code="clinic-1", name="Clinic One", kind=Department.Kind.OUTPATIENT)
    arriving = PatientFactory(family_name="Arrivingsurname")
    encounter_admit(actor=None, patient_id=arriving.pk, kind=Encounter.Kind.EMERGENCY, department=clinic)
    html = dashboard(make_step_up_stale(client_for(front_desk)))
    assert "ARRIVINGSURNAME" not in html.upper()
    assert "Today&#x27;s arrivals" in html or "Today's arrivals" in html
    assert reverse("accounts:step_up") in html
    assert not AccessEvent.objects.filter(actor_id=front_desk.pk).exists()


def test_physician_dashboard_shows_only_their_own_appointments(
    front_desk: User, physician: User, outsider: User, client_for: Callable[[User], Client]
) -> None:
    clinic = DepartmentFactory(code="clinic-1", name="Clinic One", kind=Department.Kind.OUTPATIENT)
    at = timezone.now() + datetime.timedelta(minutes=5)
    if timezone.localdate(at) != timezone.localdate():
        at = timezone.now()
    for clinician, surname in ((physician, "Minesurname"), (outsider, "Theirsurname")):
        appointment_book(
            actor=front_desk,
            patient_id=PatientFactory(family_name=surname).pk,
            department_id=clinic.pk,
            starts_at=at,
            duration_minutes=10,
            clinician=clinician,
        )
    panel = section(dashboard(client_for(physician)), "appointments-today")
    assert "MINESURNAME" in panel
    assert "THEIRSURNAME" not in panel


# --- Query counts: fixed per dashboard, whatever the number of rows -----------------------------------


def _count(client: Client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(reverse("accounts:dashboard")).status_code == 200
    return len(queries.captured_queries)


def _busy_ward(n: int, physician: User, nurse: User, lab: User) -> None:
    assert lab.department is not None
    for i in range(n):
        patient = PatientFactory()
        assign(physician, patient)
        admitted(patient, nurse.department, location=f"Bed {i}")
        prescribe(physician, patient, f"Drug {i}", Medication.Frequency.EVERY_4_HOURS, hours_ago=5)
        done = order(physician, patient, lab.department, f"Test {i}")
        completed(done, hours_ago=1)
        order(physician, patient, lab.department, f"Pending {i}", priority=Order.Priority.URGENT)


# The request's own (session, user, authenticator) and its savepoint (4), then per panel that lists
# patients its ids, one audited list access (one INSERT: sealed and judged off the request path) and its
# rows: 20 for a physician, 24 for a nurse, 11 for the laboratory as measured (issue 11), with a little room.
@pytest.mark.parametrize(("role", "budget"), [(Role.PHYSICIAN, 22), (Role.NURSE, 26), (Role.LAB, 12)])
def test_clinical_dashboard_query_count_does_not_grow_with_rows(
    role: Role,
    budget: int,
    physician: User,
    nurse: User,
    lab: User,
    client_for: Callable[[User], Client],
    django_assert_max_num_queries: Callable[..., object],
) -> None:
    user = {Role.PHYSICIAN: physician, Role.NURSE: nurse, Role.LAB: lab}[role]
    client = client_for(user)
    _busy_ward(2, physician, nurse, lab)
    few = _count(client)
    _busy_ward(5, physician, nurse, lab)
    many = _count(client)
    assert many == few, (role, few, many)
    with django_assert_max_num_queries(budget):
        client.get(reverse("accounts:dashboard"))


def test_front_desk_dashboard_query_count_does_not_grow_with_rows(
    front_desk: User,
    client_for: Callable[[User], Client],
    django_assert_max_num_queries: Callable[..., object],
) -> None:
    clinic = DepartmentFactory(code="clinic-1", name="Clinic One", kind=Department.Kind.OUTPATIENT)

    def busy(n: int) -> None:
        for _ in range(n):
            patient = PatientFactory()
            encounter_admit(actor=None, patient_id=patient.pk, kind=Encounter.Kind.EMERGENCY, department=clinic)
            appointment_book(
                actor=front_desk,
                patient_id=patient.pk,
                department_id=clinic.pk,
                starts_at=timezone.now(),
                duration_minutes=5,
            )

    client = client_for(front_desk)
    busy(2)
    few = _count(client)
    busy(5)
    assert _count(client) == few
    with django_assert_max_num_queries(31):
        client.get(reverse("accounts:dashboard"))
