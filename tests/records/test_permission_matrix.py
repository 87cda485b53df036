"""Every role x every records URL x a patient they treat / one they do not, generated from the role table.

The expected answer comes from accounts/roles.py alone: no capability -> 403; a capability but no
relationship to the patient -> 404; both -> the page (200) or, for an empty POST, the form's 400.
A URL added to records/urls.py without a row here fails ``test_every_records_url_is_in_the_matrix``.

Step-up: ``records.urls.SHOWS_RECORD`` says which pages show a patient's record. Each such view is
behind ``step_up_required`` and, with a stale step-up, sends every role that may use it to
``accounts:step_up``; the pages that only add data answer as they would with a fresh one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.test import Client
from django.urls import URLPattern, reverse

from accounts.decorators import requires_step_up
from accounts.models import User
from accounts.roles import ROLE_POLICIES, Capability, ChartAccess, DataCategory, Role
from records.models import ClinicalNote
from records.services import note_write
from records.urls import SHOWS_RECORD, urlpatterns
from tests.conftest import make_step_up_stale
from tests.records.conftest import Ward

pytestmark = pytest.mark.django_db

C = Capability
D = DataCategory


@dataclass(frozen=True)
class Spec:
    name: str
    method: str
    capability: Capability
    scope: str  # "patient", "order", "none", "self", "found" (break the glass: a patient this session found)
    category: DataCategory | None = None


SPECS = [
    Spec("my_patients", "GET", C.VIEW_PATIENT_LIST, "none"),
    Spec("search", "POST", C.SEARCH_PATIENTS, "none"),  # terms are posted, never in the URL
    Spec("register", "GET", C.REGISTER_PATIENT, "none"),
    Spec("registrations", "GET", C.REGISTER_PATIENT, "none"),
    Spec("worklist", "GET", C.VIEW_WORKLIST, "none"),
    Spec("worklist_completed", "GET", C.VIEW_WORKLIST, "none"),
    Spec("my_record", "GET", C.VIEW_OWN_RECORD, "self"),
    # Appointments: the schedule (the desk's departments, a physician's own); booking a patient.
    Spec("schedule", "GET", C.VIEW_SCHEDULE, "none"),
    Spec("appointment_new", "GET", C.BOOK_APPOINTMENT, "patient", D.DEMOGRAPHICS),
    Spec("chart", "GET", C.VIEW_CHART, "patient", D.DEMOGRAPHICS),
    Spec("registration_detail", "GET", C.VIEW_DEMOGRAPHICS, "patient", D.DEMOGRAPHICS),
    Spec("edit_demographics", "POST", C.EDIT_DEMOGRAPHICS, "patient", D.DEMOGRAPHICS),
    Spec("admit", "POST", C.ADMIT_PATIENT, "patient", D.ENCOUNTERS),
    Spec("assign", "POST", C.ASSIGN_CARE_TEAM, "patient", D.CARE_TEAM),
    Spec("note_new", "POST", C.WRITE_NOTE, "patient", D.NOTES),
    Spec("note_amend", "POST", C.WRITE_NOTE, "patient", D.NOTES),
    Spec("vitals_new", "POST", C.RECORD_VITALS, "patient", D.OBSERVATIONS),
    Spec("order_form", "GET", C.PLACE_ORDER, "patient", D.ORDERS),
    Spec("order_new", "POST", C.PLACE_ORDER, "patient", D.ORDERS),
    Spec("prescription_new", "POST", C.PRESCRIBE, "patient", D.MEDICATIONS),
    Spec("administer", "POST", C.ADMINISTER_MEDICATION, "patient", D.MEDICATIONS),
    Spec("condition_new", "POST", C.RECORD_DIAGNOSIS, "patient", D.CONDITIONS),
    Spec("allergy_new", "POST", C.RECORD_ALLERGY, "patient", D.ALLERGIES),
    Spec("order_detail", "GET", C.VIEW_WORKLIST, "order"),
    Spec("order_result", "POST", C.ENTER_RESULT, "order"),
    Spec("order_report", "POST", C.WRITE_NOTE, "order"),
    Spec("order_upload", "POST", C.UPLOAD_IMAGE, "order"),
    # Break the glass: finding needs the capability only; asking, a patient this session found (none
    # here: 404); the summary, a relationship (a grant, which nobody has here, or a care relationship).
    Spec("emergency", "GET", C.BREAK_GLASS, "none"),
    Spec("emergency_find", "POST", C.BREAK_GLASS, "none"),
    Spec("emergency_request", "GET", C.BREAK_GLASS, "found"),
    Spec("emergency_grant", "POST", C.BREAK_GLASS, "found"),
    Spec("emergency_summary", "GET", C.BREAK_GLASS, "patient", D.DEMOGRAPHICS),
]
# Routes that change state on a specific object and have no form: covered by their own tests.
OBJECT_ACTIONS = {
    "discharge",
    "unassign",
    "order_cancel",
    "order_complete",
    "attachment_download",
    "emergency_end",
    "appointment_check_in",
    "appointment_cancel",
}


def test_every_records_url_is_in_the_matrix() -> None:
    names = {p.name for p in urlpatterns}
    assert names == {s.name for s in SPECS} | OBJECT_ACTIONS


def related(role: Role, spec: Spec) -> bool:
    """Does the persona of ``role`` have the relationship the treated patient offers (from the table)?"""
    access = ROLE_POLICIES[role].chart_access
    # Care team and ward: the ward fixture assigns the physician and nurse personas; open order: it has
    # an open order for radiology and for the lab. Break-the-glass only, own record and none: no.
    return access in (
        ChartAccess.CARE_TEAM,
        ChartAccess.CARE_TEAM_OR_WARD,
        ChartAccess.DEMOGRAPHICS_ONLY,
        ChartAccess.OPEN_ORDER,
    )


def expected(role: Role, spec: Spec, *, treated: bool) -> int:
    policy = ROLE_POLICIES[role]
    if spec.capability not in policy.capabilities:
        return 403
    ok = 200 if spec.method == "GET" else 400
    if spec.scope == "none":
        return ok
    if spec.scope == "self":
        return ok  # the patient persona is linked to the treated patient
    if spec.scope == "found":
        return 404  # nobody was looked up in this session
    if spec.scope == "order":
        if not access_matches_order(role):
            return 403  # order routes are the worklist roles' own; others' role is too weak
        return ok if treated else 404
    if policy.chart_access == ChartAccess.OWN_RECORD:
        return 404
    if policy.chart_access == ChartAccess.DEMOGRAPHICS_ONLY:
        return ok if spec.category in policy.categories else 404
    if not treated or not related(role, spec):
        return 404
    return ok if spec.category in policy.categories else 404


def access_matches_order(role: Role) -> bool:
    return ROLE_POLICIES[role].chart_access == ChartAccess.OPEN_ORDER


def url_for(spec: Spec, ward: Ward, role: Role, *, treated: bool, note_id: int) -> str:
    patient = ward.treated if treated else ward.other
    if spec.scope in ("none", "self"):
        return reverse(f"records:{spec.name}")
    if spec.scope == "order":
        order = ward.lab_order if role != Role.RADIOLOGY else ward.radiology_order
        return reverse(f"records:{spec.name}", args=[order.pk if treated else 999_999])
    if spec.name == "note_amend":
        return reverse("records:note_amend", args=[patient.pk, note_id])
    if spec.name == "administer":
        return reverse("records:administer", args=[patient.pk, ward.medication.pk])
    return reverse(f"records:{spec.name}", args=[patient.pk])


@pytest.mark.parametrize("treated", [True, False], ids=["treated", "other"])
@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
@pytest.mark.parametrize("role", list(Role))
def test_matrix(
    role: Role,
    spec: Spec,
    treated: bool,
    ward: Ward,
    physician: User,
    make_persona: Callable[..., User],
    patient_user: User,
    client_for: Callable[[User], Client],
) -> None:
    persona = {Role.PHYSICIAN: physician, Role.PATIENT: patient_user}.get(role)
    if persona is None:
        persona = User.objects.filter(role=role).first() or make_persona(role)
    note = note_write(actor=physician, patient_id=ward.treated.pk, kind=ClinicalNote.Kind.PROGRESS, text="n")
    url = url_for(spec, ward, role, treated=treated, note_id=note.pk)
    client = client_for(persona)
    response = client.get(url) if spec.method == "GET" else client.post(url, {})
    want = expected(role, spec, treated=treated)
    assert response.status_code == want, (role, spec.name, treated, response.status_code)


# --- Step-up: one table (records.urls.SHOWS_RECORD), checked on the decorators and on the answers -------


def test_every_records_url_has_a_step_up_decision() -> None:
    assert {p.name for p in urlpatterns} == set(SHOWS_RECORD)


@pytest.mark.parametrize("pattern", urlpatterns, ids=[str(p.name) for p in urlpatterns])
def test_view_asks_for_step_up_exactly_when_it_shows_a_record(pattern: URLPattern) -> None:
    assert requires_step_up(pattern.callback) is SHOWS_RECORD[str(pattern.name)], pattern.name


def expected_when_stale(role: Role, spec: Spec) -> int:
    """A page that shows a record asks for the code (302) of anyone its capability lets in; others answer as usual."""
    if spec.capability not in ROLE_POLICIES[role].capabilities:
        return 403
    if SHOWS_RECORD[spec.name]:
        return 302
    return expected(role, spec, treated=True)


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
@pytest.mark.parametrize("role", list(Role))
def test_stale_step_up_matrix(
    role: Role,
    spec: Spec,
    ward: Ward,
    physician: User,
    make_persona: Callable[..., User],
    patient_user: User,
    client_for: Callable[[User], Client],
) -> None:
    persona = {Role.PHYSICIAN: physician, Role.PATIENT: patient_user}.get(role)
    if persona is None:
        persona = User.objects.filter(role=role).first() or make_persona(role)
    note = note_write(actor=physician, patient_id=ward.treated.pk, kind=ClinicalNote.Kind.PROGRESS, text="n")
    url = url_for(spec, ward, role, treated=True, note_id=note.pk)
    client = make_step_up_stale(client_for(persona))
    response = client.get(url) if spec.method == "GET" else client.post(url, {})
    want = expected_when_stale(role, spec)
    assert response.status_code == want, (role, spec.name, response.status_code)
    asked_for_code = response.status_code == 302 and response["Location"].startswith(reverse("accounts:step_up"))
    assert asked_for_code is (want == 302), (role, spec.name, response.get("Location"))


@pytest.mark.parametrize("role", list(Role))
def test_stale_step_up_on_object_actions(
    role: Role, ward: Ward, make_persona: Callable[..., User], client_for: Callable[[User], Client]
) -> None:
    """The object actions outside the matrix: the download asks for the code, the writes never do."""
    persona = User.objects.filter(role=role).first() or make_persona(role)
    client = make_step_up_stale(client_for(persona))
    p = ward.treated.pk
    urls = {
        "discharge": reverse("records:discharge", args=[p, ward.encounter.pk]),
        "unassign": reverse("records:unassign", args=[p, 999_999]),
        "order_cancel": reverse("records:order_cancel", args=[p, 999_999]),
        "order_complete": reverse("records:order_complete", args=[999_999]),
        "emergency_end": reverse("records:emergency_end", args=[999_999]),
        "attachment_download": reverse("records:attachment_download", args=[999_999]),
        "appointment_check_in": reverse("records:appointment_check_in", args=[p, 999_999]),
        "appointment_cancel": reverse("records:appointment_cancel", args=[p, 999_999]),
    }
    assert set(urls) == OBJECT_ACTIONS
    for name, url in urls.items():
        response = client.get(url) if name == "attachment_download" else client.post(url)
        asked_for_code = response.status_code == 302 and response["Location"].startswith(reverse("accounts:step_up"))
        assert asked_for_code is SHOWS_RECORD[name], (role, name, response.status_code)
