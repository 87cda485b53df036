"""The research pages: a researcher's requests (list, new, detail), compliance's review (approve or
reject with a note), the dashboards' panels, and who may open them."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.roles import Role
from research.models import DatasetRequest
from research.services import request_submit

pytestmark = pytest.mark.django_db

FIELDS = ["demographics_generalised", "conditions"]


def form_data(**kwargs):
    data = {
        "title": "Diabetes control",
        "purpose": "HbA1c in adults.",
        "tier": "safe_harbor",
        "dua_reference": "",
        "condition_codes": "E11.9, 44054006",
        "age_min": "18",
        "age_max": "80",
        "encounters_from": "",
        "encounters_to": "",
        "sex": "",
        "dataset_fields": FIELDS,
        "k": "5",
    }
    data.update(kwargs)
    return data


def submitted(researcher, n=0, **kwargs):
    values = {"title": f"Study {n}", "purpose": "p", "tier": "safe_harbor", "fields": FIELDS}
    values.update(kwargs)
    return request_submit(actor=researcher, **values)


# --- Who may open what ------------------------------------------------------------------------------

RESEARCHER_PAGES = ["research:requests", "research:request_new"]
COMPLIANCE_PAGES = ["research:review"]


@pytest.mark.parametrize("role", list(Role))
def test_only_researchers_open_the_researcher_pages_and_only_compliance_the_review(role, make_persona, client_for):
    client = client_for(make_persona(role))
    for name in RESEARCHER_PAGES:
        assert client.get(reverse(name)).status_code == (200 if role == Role.RESEARCHER else 403), (role, name)
    for name in COMPLIANCE_PAGES:
        assert client.get(reverse(name)).status_code == (200 if role == Role.COMPLIANCE else 403), (role, name)


def test_the_researcher_dashboard_links_to_the_requests(researcher, client_for):
    submitted(researcher)
    page = client_for(researcher).get(reverse("accounts:dashboard")).content.decode()
    assert 'data-testid="research-panel"' in page
    assert reverse("research:requests") in page
    assert "1 open request" in page


def test_the_compliance_dashboard_counts_requests_awaiting_a_decision(researcher, compliance, client_for):
    submitted(researcher, 1)
    submitted(researcher, 2)
    page = client_for(compliance).get(reverse("accounts:dashboard")).content.decode()
    assert 'data-testid="research-review-panel"' in page
    assert "<strong>2</strong> requests awaiting" in page


# --- The researcher's requests ----------------------------------------------------------------------


def test_a_new_request_is_submitted_through_the_form(researcher, client_for):
    client = client_for(researcher)
    response = client.post(reverse("research:request_new"), form_data())
    request = DatasetRequest.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("research:request", args=[request.pk])
    assert request.researcher == researcher
    assert request.status == DatasetRequest.Status.SUBMITTED
    assert request.condition_codes == ["E11.9", "44054006"]
    assert request.fields == FIELDS
    assert (request.age_min, request.age_max, request.k) == (18, 80, 5)
    page = client.get(response["Location"]).content.decode()
    assert "E11.9, 44054006" in page
    assert "Submitted" in page


def test_the_form_needs_csrf(researcher):
    from django.test import Client

    from tests.conftest import sign_in

    client = sign_in(Client(enforce_csrf_checks=True), researcher)
    assert client.post(reverse("research:request_new"), form_data()).status_code == 403
    assert not DatasetRequest.objects.exists()


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"tier": "limited", "dua_reference": ""}, "dua_reference", "needs a data-use agreement"),
        ({"dua_reference": "DUA-1"}, "dua_reference", "only for the limited tier"),
        ({"date_shift": "on"}, "date_shift", "Safe Harbor keeps years only"),
        ({"condition_codes": "diabetes"}, "condition_codes", "SNOMED CT id or an ICD-10 code"),
        ({"age_min": "70", "age_max": "20"}, "age_max", "upper bound is below"),
        ({"encounters_from": "2025-01-01", "encounters_to": "2024-01-01"}, "encounters_to", "ends before it starts"),
        ({"dataset_fields": ["names"]}, "dataset_fields", "Select a valid choice"),
        ({"dataset_fields": []}, "dataset_fields", "required"),
        ({"k": "1"}, "k", "greater than or equal to 2"),
        ({"tier": "everything"}, "tier", "Select a valid choice"),
        ({"title": ""}, "title", "required"),
    ],
)
def test_an_invalid_request_shows_field_errors_and_saves_nothing(researcher, client_for, changes, field, message):
    response = client_for(researcher).post(reverse("research:request_new"), form_data(**changes))
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert field in errors, errors
    assert any(message in e for e in errors[field]), errors
    assert f'id="id_{field}_errors"' in response.content.decode() or field in ("tier", "dataset_fields")
    assert not DatasetRequest.objects.exists()


def test_a_researcher_sees_only_their_own_requests(researcher, make_persona, client_for):
    mine = submitted(researcher, 1)
    other = submitted(make_persona(Role.RESEARCHER, username="other-researcher"), 2, title="Not mine")
    client = client_for(researcher)
    page = client.get(reverse("research:requests")).content.decode()
    assert "Study 1" in page
    assert "Not mine" not in page
    assert client.get(reverse("research:request", args=[mine.pk])).status_code == 200
    assert client.get(reverse("research:request", args=[other.pk])).status_code == 404
    assert client.get(reverse("research:request", args=[999_999])).status_code == 404


def test_the_list_of_requests_is_a_fixed_number_of_queries(researcher, client_for):
    client = client_for(researcher)
    submitted(researcher, 0)
    with CaptureQueriesContext(connection) as one:
        assert client.get(reverse("research:requests")).status_code == 200
    for n in range(1, 6):
        submitted(researcher, n)
    with CaptureQueriesContext(connection) as six:
        assert client.get(reverse("research:requests")).status_code == 200
    assert len(six) == len(one)


# --- Compliance's review ----------------------------------------------------------------------------


def test_compliance_approves_a_request_with_a_note(researcher, compliance, client_for):
    request = submitted(researcher)
    client = client_for(compliance)
    page = client.get(reverse("research:review")).content.decode()
    assert reverse("research:review_detail", args=[request.pk]) in page
    response = client.post(
        reverse("research:review_detail", args=[request.pk]), {"decision": "approve", "note": "IRB 2026-14"}
    )
    assert response.status_code == 302
    request.refresh_from_db()
    assert (request.status, request.decided_by, request.decision_note) == ("approved", compliance, "IRB 2026-14")
    page = client_for(researcher).get(reverse("research:request", args=[request.pk])).content.decode()
    assert "IRB 2026-14" in page
    assert "Approved" in page


def test_a_rejection_needs_a_note(researcher, compliance, client_for):
    request = submitted(researcher)
    client = client_for(compliance)
    url = reverse("research:review_detail", args=[request.pk])
    response = client.post(url, {"decision": "reject", "note": ""})
    assert response.status_code == 400
    assert "note" in response.context["form"].errors
    request.refresh_from_db()
    assert request.status == "submitted"
    assert client.post(url, {"decision": "reject", "note": "No ethics approval."}).status_code == 302
    request.refresh_from_db()
    assert (request.status, request.decision_note) == ("rejected", "No ethics approval.")


def test_a_request_is_decided_once(researcher, compliance, make_persona, client_for):
    request = submitted(researcher)
    url = reverse("research:review_detail", args=[request.pk])
    assert client_for(compliance).post(url, {"decision": "approve", "note": ""}).status_code == 302
    second = make_persona(Role.COMPLIANCE, username="second-officer")
    response = client_for(second).post(url, {"decision": "reject", "note": "late"})
    assert response.status_code == 400
    request.refresh_from_db()
    assert (request.status, request.decided_by) == ("approved", compliance)


def test_an_unknown_request_is_not_found_for_compliance(compliance, client_for):
    assert client_for(compliance).get(reverse("research:review_detail", args=[999_999])).status_code == 404


def test_researchers_cannot_decide(researcher, client_for):
    request = submitted(researcher)
    response = client_for(researcher).post(
        reverse("research:review_detail", args=[request.pk]), {"decision": "approve", "note": ""}
    )
    assert response.status_code == 403
    request.refresh_from_db()
    assert request.status == "submitted"


def test_the_review_list_is_a_fixed_number_of_queries_and_shows_built_reports(
    researcher, compliance, client_for, population, approved, settings, tmp_path
):
    settings.RESEARCH_DATASETS_DIR = tmp_path
    population(6)
    client = client_for(compliance)
    submitted(researcher, 0)
    built = approved()
    call_command("deid_export", "--request", str(built.pk), "--actor", compliance.username)
    with CaptureQueriesContext(connection) as few:
        page = client.get(reverse("research:review")).content.decode()
    assert 'data-testid="datasets"' in page
    assert "Zelda" not in page
    assert "MRN" not in page
    for n in range(1, 6):
        submitted(researcher, n)
    with CaptureQueriesContext(connection) as more:
        assert client.get(reverse("research:review")).status_code == 200
    assert len(more) == len(few)
    detail = client.get(reverse("research:review_detail", args=[built.pk])).content.decode()
    assert 'data-testid="privacy-report"' in detail


@pytest.mark.parametrize("role", [r for r in Role if r != Role.RESEARCHER])
def test_every_researcher_page_is_refused_to_other_roles(role, researcher, make_persona, client_for):
    from accounts.models import User

    request = submitted(researcher)
    client = client_for(User.objects.filter(role=role).first() or make_persona(role))
    assert client.get(reverse("research:request", args=[request.pk])).status_code == 403
    assert client.post(reverse("research:request_new"), form_data()).status_code == 403
    assert client.post(reverse("research:download_prepare", args=[request.pk])).status_code == 403
    assert client.post(reverse("research:download"), {"token": "x" * 43}).status_code == 403
    review = client.get(reverse("research:review_detail", args=[request.pk])).status_code
    assert review == (200 if role == Role.COMPLIANCE else 403)
    assert DatasetRequest.objects.count() == 1
