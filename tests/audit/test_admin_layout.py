"""The compliance admin (issue 10): one audit section, patients by MRN read on the audited path (one
recording per page, bounded queries), lists narrow enough to read, wide ones scrolling in their box."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.test import Client
from django.urls import reverse

from accounts.models import User
from audit.admin import AccessEventAdmin, AlertAdmin, AuthEventRecordAdmin, ChangeEventAdmin, DirectChangeAdmin
from audit.models import AccessEvent
from records import selectors
from tests.audit.test_admin import changelist
from tests.factories import PatientFactory
from tests.records.conftest import Ward

pytestmark = pytest.mark.django_db


@pytest.fixture
def trail(ward: Ward, physician: User, front_desk: User, client_for: Callable[[User], Client]) -> Ward:
    """Access events about both ward patients, made by using the application."""
    assert client_for(physician).get(reverse("records:chart", args=[ward.treated.pk])).status_code == 200
    assert client_for(front_desk).get(reverse("records:registration_detail", args=[ward.other.pk])).status_code == 200
    return ward


@pytest.fixture
def officer(compliance: User, client_for: Callable[[User], Client]) -> Client:
    return client_for(compliance)


def sections(response: Any) -> dict[str, list[str]]:
    return {app["app_label"]: [m["object_name"] for m in app["models"]] for app in response.context["app_list"]}


def test_the_admin_index_has_one_audit_section_with_the_change_history_in_it(officer: Client) -> None:
    index = sections(officer.get(reverse("admin:index")))
    assert "auditlog" not in index
    assert "LogEntry" in index["audit"]
    assert "AccessEvent" in index["audit"]
    # The audit app's own page lists it too, and the change history still opens.
    assert "LogEntry" in sections(officer.get(reverse("admin:app_list", args=["audit"])))["audit"]
    assert officer.get(reverse("admin:auditlog_logentry_changelist")).status_code == 200
    page = officer.get(reverse("admin:index")).content.decode()
    assert page.count('class="app-audit') >= 1
    assert 'class="app-auditlog' not in page


def test_the_mrn_column_is_read_once_per_page_and_recorded_for_each_patient_shown(
    trail: Ward,
    compliance: User,
    officer: Client,
) -> None:
    before = AccessEvent.objects.count()
    response = officer.get(changelist("accessevent"))
    page = response.content.decode()
    shown = {e.patient_id for e in response.context["cl"].result_list if e.patient_id is not None}
    assert {trail.treated.pk, trail.other.pk} <= shown
    assert f"MRN {trail.treated.mrn}" in page
    assert f"MRN {trail.other.mrn}" in page
    recorded = AccessEvent.objects.filter(pk__gt=0).order_by("id")[before:]
    mrn_reads = [e for e in recorded if e.explanation == "audit_review"]
    # One event per patient shown, all written by one recording (one instant), by the officer.
    assert sorted(e.patient_id for e in mrn_reads) == sorted(shown)
    assert {(e.actor_id, e.purpose, e.action, e.category) for e in mrn_reads} == {
        (compliance.pk, "compliance", "list", "demographics")
    }
    assert len({e.at for e in mrn_reads}) == 1
    assert mrn_reads[0].detail == {"list": "audit_admin", "view": "accessevent_list"}
    # Audit rows hold no MRN themselves.
    assert trail.treated.mrn not in str([e.detail for e in recorded])


def test_the_mrn_column_costs_the_same_queries_for_many_patients(
    compliance: User, officer: Client, client_for: Callable[[User], Client], django_assert_max_num_queries: Any
) -> None:
    few = PatientFactory()
    selectors.patient_mrns_for_audit(actor=compliance, patient_ids=[few.pk], view="warm-up")
    with django_assert_max_num_queries(60) as small:
        officer.get(changelist("accessevent"))
    for patient in [PatientFactory() for _ in range(30)]:
        selectors.patient_mrns_for_audit(actor=compliance, patient_ids=[patient.pk], view="seed")
    with django_assert_max_num_queries(len(small.captured_queries)):
        response = officer.get(changelist("accessevent"))
    assert len({e.patient_id for e in response.context["cl"].result_list}) > 30


@pytest.mark.parametrize("persona", ["physician", "front_desk", "security"])
def test_roles_outside_compliance_cannot_read_mrns_through_the_audit_selector(
    persona: str, ward: Ward, request: pytest.FixtureRequest
) -> None:
    user = request.getfixturevalue(persona)
    with pytest.raises(selectors.AccessRefused) as refused:
        selectors.patient_mrns_for_audit(actor=user, patient_ids=[ward.treated.pk], view="probe")
    assert refused.value.status == 403
    assert not AccessEvent.objects.filter(actor_id=user.pk, explanation="audit_review").exists()


def test_an_operator_sees_patient_ids_not_mrns(
    trail: Ward, operator: User, client_for: Callable[[User], Client]
) -> None:
    page = client_for(operator).get(changelist("accessevent")).content.decode()
    assert f"Patient #{trail.treated.pk}" in page
    assert trail.treated.mrn not in page
    assert not AccessEvent.objects.filter(actor_id=operator.pk, explanation="audit_review").exists()


def test_audit_lists_show_a_readable_number_of_columns() -> None:
    for admin_class, most in (
        (AccessEventAdmin, 10),
        (ChangeEventAdmin, 9),
        (AuthEventRecordAdmin, 8),
        (DirectChangeAdmin, 11),
        (AlertAdmin, 9),
    ):
        assert len(admin_class.list_display) <= most, admin_class.__name__
    assert {"user_agent_short", "request_id", "session_ref", "ip"}.isdisjoint(AccessEventAdmin.list_display)


def test_wide_tables_scroll_in_their_own_box_through_the_admin_style_sheet(officer: Client) -> None:
    page = officer.get(changelist("accessevent")).content.decode()
    assert '<link rel="stylesheet" href="/static/css/admin.css">' in page
    assert 'style="' not in page.split("<body", 1)[1].split('id="result_list"', 1)[0]
    path = finders.find("css/admin.css")
    assert path is not None
    with open(path, encoding="utf-8") as sheet:
        css = sheet.read()
    assert "#changelist .results { overflow-x: auto;" in css
    assert "min-width: 0" in css
