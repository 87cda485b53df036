"""The compliance officers' audit trail in the admin: read-only, role-gated, searchable, exported, audited."""

from __future__ import annotations

import contextlib
import csv
import datetime
import io
import json
from collections.abc import Callable, Iterator

import pytest
from django.core.cache import cache
from django.db import connection
from django.db.models import Model, QuerySet
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from accounts.services import VERIFIED_AT_KEY
from audit import exports, reports
from audit.admin import AccessEventAdmin, AuthEventRecordAdmin, ChangeEventAdmin, DirectChangeAdmin
from audit.exports import csv_cell
from audit.models import AccessEvent, AuthEventRecord, ChangeEvent, DirectChange
from tests.records.conftest import Ward

pytestmark = pytest.mark.django_db

MODELS = {
    "accessevent": (AccessEvent, AccessEventAdmin),
    "changeevent": (ChangeEvent, ChangeEventAdmin),
    "autheventrecord": (AuthEventRecord, AuthEventRecordAdmin),
    "directchange": (DirectChange, DirectChangeAdmin),
}
NASTY_AGENT = '=HYPERLINK("http://evil.example/","click")'


def changelist(model: str) -> str:
    return reverse(f"admin:audit_{model}_changelist")


def export_url(model: str) -> str:
    return reverse(f"admin:audit_{model}_export")


def trail_events() -> list[AccessEvent]:
    return list(AccessEvent.objects.filter(category=reports.AUDIT_TRAIL_CATEGORY).order_by("id"))


class Written:
    """The one event a block wrote (set when the block ends)."""

    event: AccessEvent


@contextlib.contextmanager
def one_trail_event(actor: User, action: str = "view") -> Iterator[Written]:
    """Assert that the block writes exactly one audit-of-the-audit event, by ``actor``."""
    before = {event.pk for event in trail_events()}
    written = Written()
    yield written
    new = [event for event in trail_events() if event.pk not in before]
    assert len(new) == 1, [event.detail for event in new]
    event = new[0]
    assert (event.actor_id, event.actor_role, event.action, event.purpose) == (
        actor.pk,
        "compliance" if actor.role else "operator",
        action,
        "compliance",
    )
    written.event = event


def csv_rows(response: StreamingHttpResponse) -> list[list[str]]:
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith("attachment;")
    assert "no-store" in response["Cache-Control"]
    text = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(text)))


@pytest.fixture(autouse=True)
def _fresh_filter_choices() -> None:
    # The filters' choice lists are cached for minutes; each test has a fresh database.
    cache.clear()


@pytest.fixture
def trail(ward: Ward, physician: User, nurse: User, front_desk: User, client_for: Callable[[User], Client]) -> Ward:
    """Events made by using the application: charts opened, a registration viewed, a sign-in."""
    chart = client_for(physician).get(reverse("records:chart", args=[ward.treated.pk]), HTTP_USER_AGENT=NASTY_AGENT)
    assert chart.status_code == 200
    assert client_for(nurse).get(reverse("records:chart", args=[ward.treated.pk])).status_code == 200
    assert client_for(front_desk).get(reverse("records:registration_detail", args=[ward.other.pk])).status_code == 200
    assert AccessEvent.objects.filter(patient_id=ward.other.pk).exists()
    Client().post(reverse("accounts:login"), {"username": "nurse", "password": "not the password"})
    assert AuthEventRecord.objects.filter(event="login_failed").exists()
    return ward


@pytest.fixture
def officer(compliance: User, client_for: Callable[[User], Client]) -> Client:
    return client_for(compliance)


@pytest.fixture
def seen(officer: Client) -> AccessEvent:
    """For tests that need only some event: the one the officer's first look at the trail writes."""
    assert officer.get(changelist("accessevent")).status_code == 200
    event = AccessEvent.objects.order_by("-id").first()
    assert event is not None
    return event


def listed(response: object) -> list[AccessEvent]:
    return list(response.context["cl"].queryset)  # type: ignore[attr-defined]


# --- Lists: every table, every column sortable, every view audited -----------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_compliance_sees_each_list_sorted_by_each_column(
    trail: Ward, compliance: User, officer: Client, model: str
) -> None:
    with one_trail_event(compliance) as event_written:
        response = officer.get(changelist(model))
    event = event_written.event
    assert response.status_code == 200
    cl = response.context["cl"]
    assert event.detail == {"model": model, "view": "list", "filters": {}, "results": cl.result_count, "page": 1}
    columns = [name for name in cl.list_display if name != "action_checkbox"]
    assert columns == list(MODELS[model][1].list_display)
    fields = {}
    for index, name in enumerate(cl.list_display):
        if name == "action_checkbox":
            continue
        fields[index] = cl.get_ordering_field(name)
        assert fields[index], f"{model}.{name} is not sortable"
        response = officer.get(changelist(model), {"o": str(index)})
        assert response.status_code == 200
        assert response.context["cl"].queryset.query.order_by[0] == fields[index]
    # Every column at once, each descending (the admin's multi-column sort).
    response = officer.get(changelist(model), {"o": ".".join(f"-{index}" for index in fields)})
    assert response.status_code == 200
    ordering = list(response.context["cl"].queryset.query.order_by)
    assert ordering[: len(fields)] == [f"-{field}" for field in fields.values()]


def test_list_shows_patients_by_mrn_and_never_by_name(trail: Ward, officer: Client) -> None:
    page = officer.get(changelist("accessevent")).content.decode()
    assert f"MRN {trail.treated.mrn}" in page
    assert f"Patient #{trail.treated.pk}" not in page
    for secret in (trail.treated.family_name, trail.treated.given_name, trail.other.family_name):
        assert secret not in page


def test_filters_narrow_the_list(trail: Ward, nurse: User, officer: Client) -> None:
    url = changelist("accessevent")
    assert {e.actor_role for e in listed(officer.get(url, {"actor_role": "nurse"}))} == {"nurse"}
    assert {e.actor_id for e in listed(officer.get(url, {"actor_id": nurse.pk}))} == {nurse.pk}
    assert {e.action for e in listed(officer.get(url, {"action": "view"}))} == {"view"}
    with_notes = listed(officer.get(url, {"section": "notes"}))
    assert with_notes
    assert all("notes" in e.shown_sections for e in with_notes)
    by_patient = listed(officer.get(url, {"patient_id": trail.other.pk}))
    assert by_patient
    assert {e.patient_id for e in by_patient} == {trail.other.pk}
    # Filters combine.
    both = listed(officer.get(url, {"actor_role": "nurse", "section": "notes"}))
    assert both
    assert all(e.actor_role == "nurse" and "notes" in e.shown_sections for e in both)


def test_date_range_and_hierarchy_filter_by_day(trail: Ward, compliance: User, officer: Client) -> None:
    url = changelist("accessevent")
    today = timezone.localdate()
    yesterday = today - datetime.timedelta(days=1)
    everything = AccessEvent.objects.exclude(category=reports.AUDIT_TRAIL_CATEGORY).count()
    with one_trail_event(compliance) as event_written:
        response = officer.get(url, {"at_from": today.isoformat(), "at_to": today.isoformat()})
    event = event_written.event
    assert event.detail["filters"] == {"at_from": today.isoformat(), "at_to": today.isoformat()}
    assert response.context["cl"].result_count >= everything
    assert listed(officer.get(url, {"at_to": yesterday.isoformat()})) == []
    assert listed(officer.get(url, {"at_from": (today + datetime.timedelta(days=1)).isoformat()})) == []
    hierarchy = officer.get(url, {"at__year": today.year, "at__month": today.month, "at__day": today.day})
    assert hierarchy.status_code == 200
    assert hierarchy.context["cl"].result_count >= everything


def test_an_invalid_filter_value_shows_nothing_and_records_nothing(trail: Ward, officer: Client) -> None:
    before = len(trail_events())
    for params in (
        {"actor_role": "no-such-role"},
        {"action": "T500000"},  # free text (an MRN?) never reaches the list, nor the audit event
        {"actor_id": "abc"},
        {"patient_id": "12; DROP"},
        {"at_from": "yesterday"},
    ):
        response = officer.get(changelist("accessevent"), params)
        assert response.status_code == 302, params
        assert response["Location"].endswith("?e=1")
    assert len(trail_events()) == before


def test_an_arbitrary_lookup_from_the_query_string_is_refused(officer: Client) -> None:
    before = len(trail_events())
    assert officer.get(changelist("accessevent"), {"detail__contains": "x"}).status_code == 400
    assert officer.get(changelist("accessevent"), {"user_agent__startswith": "="}).status_code == 400
    assert len(trail_events()) == before


# --- Search -----------------------------------------------------------------------------------------


def test_search_by_username(trail: Ward, nurse: User, officer: Client) -> None:
    found = listed(officer.get(changelist("accessevent"), {"q": "NURS"}))
    assert found
    assert {e.actor_id for e in found} == {nurse.pk}
    auth = listed(officer.get(changelist("autheventrecord"), {"q": "nurse"}))
    assert {(e.event, e.username) for e in auth} == {("login_failed", "nurse")}
    # A sign-in attempt with a name that is no account is found by that name, though only its hash is kept.
    Client().post(reverse("accounts:login"), {"username": "Tina Treatedsurname", "password": "guess"})
    unknown = listed(officer.get(changelist("autheventrecord"), {"q": "Tina Treatedsurname"}))
    assert [e.event for e in unknown] == ["login_failed"]
    assert unknown[0].username.startswith("unknown:")


def test_find_by_mrn_posts_and_lands_on_a_patient_id_filter_without_the_mrn_in_any_url(
    trail: Ward, compliance: User, officer: Client
) -> None:
    mrn = trail.treated.mrn
    for term in (mrn, f"  {mrn.lower()}  "):
        # Read again each time: showing the MRN column recorded the officer's view of the patient.
        expected = set(AccessEvent.objects.filter(patient_id=trail.treated.pk).values_list("id", flat=True))
        assert expected
        response = officer.post(changelist("accessevent"), {"mrn": term})
        assert response.status_code == 302
        assert mrn.lower() not in response["Location"].lower()
        assert f"patient_id={trail.treated.pk}" in response["Location"]
        with one_trail_event(compliance) as event_written:
            listed_response = officer.get(response["Location"])
        assert {e.pk for e in listed_response.context["cl"].result_list} == expected, term
        assert mrn.lower() not in json.dumps(event_written.event.detail).lower()
    # The GET search box never matches MRNs (they would be in the URL).
    assert listed(officer.get(changelist("accessevent"), {"q": mrn})) == []
    # An MRN nobody has finds nothing, with a message.
    missing = officer.post(changelist("accessevent"), {"mrn": "ZZ-000000"}, follow=True)
    assert b"No patient has this MRN" in missing.content


def test_detail_page_is_read_only_and_shows_no_patient_data(trail: Ward, compliance: User, officer: Client) -> None:
    event = AccessEvent.objects.filter(patient_id=trail.treated.pk).first()
    assert event is not None
    with one_trail_event(compliance) as audit_written:
        response = officer.get(reverse("admin:audit_accessevent_change", args=[event.pk]))
    audit = audit_written.event
    assert response.status_code == 200
    assert audit.detail == {"model": "accessevent", "view": "detail", "object_id": event.pk}
    page = response.content.decode()
    assert f"MRN {trail.treated.mrn}" in page
    for secret in (trail.treated.family_name, trail.treated.given_name):
        assert secret not in page
    assert response.context["has_change_permission"] is False
    assert response.context["has_delete_permission"] is False
    assert 'name="_save"' not in page
    assert "deletelink" not in page
    assert "historylink" not in page


def test_nothing_can_be_added_changed_or_deleted(trail: Ward, officer: Client) -> None:
    for model, (model_class, _) in MODELS.items():
        assert officer.get(reverse(f"admin:audit_{model}_add")).status_code == 403
        assert officer.post(reverse(f"admin:audit_{model}_add"), {}).status_code == 403
        obj = model_class.objects.first()
        # Direct changes are written by PostgreSQL triggers only; SQLite has none.
        if obj is not None:
            _cannot_change_or_delete(officer, model, obj)
    assert DirectChange.objects.exists() or connection.vendor == "sqlite"


def _cannot_change_or_delete(officer: Client, model: str, obj: Model) -> None:
    assert officer.post(reverse(f"admin:audit_{model}_change", args=[obj.pk]), {}).status_code == 403
    assert officer.get(reverse(f"admin:audit_{model}_delete", args=[obj.pk])).status_code == 403
    assert officer.post(reverse(f"admin:audit_{model}_delete", args=[obj.pk]), {"post": "yes"}).status_code == 403
    assert officer.get(reverse(f"admin:audit_{model}_history", args=[obj.pk])).status_code == 403
    response = officer.get(changelist(model))
    actions = [name for name, _ in response.context["action_form"].fields["action"].choices]
    assert "delete_selected" not in actions
    assert response.context["has_add_permission"] is False
    assert reverse(f"admin:audit_{model}_add") not in response.content.decode()
    # Posting the delete action anyway deletes nothing.
    officer.post(changelist(model), {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"})
    assert type(obj).objects.filter(pk=obj.pk).exists()


# --- CSV export ---------------------------------------------------------------------------------------


def test_export_link_streams_the_filtered_list(
    trail: Ward, compliance: User, officer: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunk_sizes: list[int | None] = []
    original_iterator = QuerySet.iterator

    def spy(self: QuerySet[object], chunk_size: int | None = None) -> Iterator[object]:
        chunk_sizes.append(chunk_size)
        return original_iterator(self, chunk_size=chunk_size)

    monkeypatch.setattr(QuerySet, "iterator", spy)
    page = officer.get(changelist("accessevent"), {"actor_role": "nurse"}).content.decode()
    assert "Export filtered view as CSV" in page
    assert f"{export_url('accessevent')}?actor_role=nurse" in page
    with one_trail_event(compliance, "export") as event_written:
        response = officer.get(export_url("accessevent"), {"actor_role": "nurse", "o": "-2"})
    event = event_written.event
    rows = csv_rows(response)
    assert rows[0] == list(AccessEventAdmin.csv_columns)
    expected = AccessEvent.objects.filter(actor_role="nurse").order_by("-at", "-id")
    assert [int(row[0]) for row in rows[1:]] == list(expected.values_list("id", flat=True))
    assert {row[rows[0].index("actor_role")] for row in rows[1:]} == {"nurse"}
    assert event.detail["rows"] == len(rows) - 1
    assert event.detail["filters"] == {"actor_role": "nurse"}
    # Read in chunks from a cursor, never as one list.
    assert chunk_sizes == [2000]
    assert officer.post(export_url("accessevent")).status_code == 405


def test_export_of_a_patient_filter_holds_only_that_patient(trail: Ward, compliance: User, officer: Client) -> None:
    with one_trail_event(compliance, "export") as event_written:
        rows = csv_rows(officer.get(export_url("accessevent"), {"patient_id": trail.treated.pk}))
    event = event_written.event
    assert {row[rows[0].index("patient_id")] for row in rows[1:]} == {str(trail.treated.pk)}
    assert trail.treated.mrn.lower() not in json.dumps(event.detail).lower()


def test_every_table_exports_with_a_header(trail: Ward, officer: Client) -> None:
    for model in ("changeevent", "autheventrecord", "directchange"):
        rows = csv_rows(officer.get(export_url(model)))
        assert rows[0] == list(MODELS[model][1].csv_columns)
        assert len(rows) - 1 == MODELS[model][0].objects.count() > (0 if model != "directchange" else -1)


def test_export_action_streams_the_selected_rows(
    trail: Ward, compliance: User, physician: User, officer: Client, client_for: Callable[[User], Client]
) -> None:
    for _ in range(3):  # one event per chart view
        assert client_for(physician).get(reverse("records:chart", args=[trail.treated.pk])).status_code == 200
    chosen = list(AccessEvent.objects.filter(actor_role="physician").values_list("id", flat=True)[:3])
    with one_trail_event(compliance, "export") as event_written:
        response = officer.post(
            changelist("accessevent"), {"action": "export_selected_csv", "_selected_action": chosen}
        )
    event = event_written.event
    rows = csv_rows(response)
    assert rows[0] == list(AccessEventAdmin.csv_columns)
    assert sorted(int(row[0]) for row in rows[1:]) == sorted(chosen)
    assert event.detail["rows"] == 3
    assert event.detail["view"] == "export_action"


def test_export_action_across_the_filtered_list(trail: Ward, officer: Client) -> None:
    response = officer.post(
        f"{changelist('accessevent')}?patient_id={trail.other.pk}",
        {"action": "export_selected_csv", "_selected_action": ["1"], "select_across": "1"},
    )
    rows = csv_rows(response)
    assert len(rows) - 1 == AccessEvent.objects.filter(patient_id=trail.other.pk).count()


def test_formula_injection_is_neutralised(trail: Ward, physician: User, officer: Client) -> None:
    rows = csv_rows(officer.get(export_url("accessevent"), {"actor_id": physician.pk}))
    agents = {row[rows[0].index("user_agent")] for row in rows[1:]}
    assert "'" + NASTY_AGENT in agents
    assert NASTY_AGENT not in agents


def test_csv_is_sent_in_blocks_as_the_rows_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exports, "FLUSH_BYTES", 100)
    read: list[int] = []

    def rows() -> Iterator[tuple[int, str]]:
        for number in range(50):
            read.append(number)
            yield number, "x" * 10

    stream = exports.csv_stream(["n", "text"], rows())
    first = next(stream)
    assert first.startswith(b"n,text\r\n")
    assert len(read) < 10  # the first block left before most rows were even read
    whole = first + b"".join(stream)
    assert len(list(csv.reader(io.StringIO(whole.decode())))) == 51


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1+1", "@SUM(A1)", "\t=1", "\r=1"])
def test_csv_cell_quotes_formula_prefixes(text: str) -> None:
    assert csv_cell(text) == "'" + text
    assert csv_cell(f"a{text}") == f"a{text}"
    assert csv_cell(-1) == -1  # numbers are ours (ids), not typed text


def test_operator_may_look_but_not_export(operator: User, client_for: Callable[[User], Client]) -> None:
    client = client_for(operator)
    with one_trail_event(operator):
        response = client.get(changelist("accessevent"))
    assert response.status_code == 200
    assert "Export filtered view as CSV" not in response.content.decode()
    assert response.context["action_form"] is None  # no export, no delete: no action at all
    assert client.get(export_url("accessevent")).status_code == 403
    assert client.get(reverse("admin:audit_report_user_export"), {"username": "nurse"}).status_code == 403
    event_id = AccessEvent.objects.values_list("id", flat=True).first()
    post = client.post(changelist("accessevent"), {"action": "export_selected_csv", "_selected_action": [event_id]})
    assert not isinstance(post, StreamingHttpResponse)
    assert not [event for event in trail_events() if event.action == "export"]


def test_export_asks_for_a_fresh_code_first(officer: Client) -> None:
    session = officer.session
    session[VERIFIED_AT_KEY] = 0  # the last one-time code is long past
    session.save()
    before = len(trail_events())
    response = officer.get(export_url("accessevent"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:step_up"))
    assert len(trail_events()) == before


# --- Reports --------------------------------------------------------------------------------------------


def _period(days_back: int = 1) -> dict[str, str]:
    today = timezone.localdate()
    return {"date_from": (today - datetime.timedelta(days=days_back)).isoformat(), "date_to": today.isoformat()}


def test_patient_report_by_mrn_lists_every_access_to_that_patient(
    trail: Ward, compliance: User, officer: Client
) -> None:
    url = reverse("admin:audit_report_patient")
    form = officer.get(url)
    assert form.status_code == 200
    # The MRN is posted and resolved; the report page is addressed by patient id only.
    response = officer.post(url, {"mrn": f" {trail.treated.mrn.lower()} ", **_period()})
    assert response.status_code == 302
    location = response["Location"]
    assert trail.treated.mrn.lower() not in location.lower()
    assert f"patient_id={trail.treated.pk}" in location
    with one_trail_event(compliance) as event_written:
        page = officer.get(location)
    event = event_written.event
    assert page.status_code == 200
    shown = list(page.context["page"].object_list)
    expected = list(
        AccessEvent.objects.filter(patient_id=trail.treated.pk)
        .exclude(pk=event.pk)
        .order_by("-at", "-id")
        .values_list("id", flat=True)
    )
    assert [e.pk for e in shown] == expected
    assert event.patient_id == trail.treated.pk
    assert event.detail["report"] == "patient"
    assert event.detail["results"] == len(expected)
    body = page.content.decode()
    for secret in (trail.treated.family_name, trail.treated.given_name, trail.treated.mrn):
        assert secret not in body


def test_patient_report_by_id_outside_the_period_is_empty(trail: Ward, officer: Client) -> None:
    long_ago = {"date_from": "2001-01-01", "date_to": "2001-12-31"}
    page = officer.get(reverse("admin:audit_report_patient"), {"patient_id": trail.treated.pk, **long_ago})
    assert page.status_code == 200
    assert page.context["page"].paginator.count == 0


def test_patient_report_form_errors_show_nothing_and_record_nothing(trail: Ward, officer: Client) -> None:
    url = reverse("admin:audit_report_patient")
    before = len(trail_events())
    unknown = officer.post(url, {"mrn": "NOPE-1", **_period()})
    assert unknown.status_code == 200
    assert "No patient has this MRN." in unknown.content.decode()
    both = officer.post(url, {"mrn": trail.treated.mrn, "patient_id": trail.treated.pk, **_period()})
    assert "not both" in both.content.decode()
    backwards = officer.get(url, {"patient_id": trail.treated.pk, "date_from": "2030-01-02", "date_to": "2030-01-01"})
    assert "ends before it starts" in backwards.content.decode()
    assert len(trail_events()) == before


def test_user_report_lists_what_one_user_opened(
    trail: Ward,
    compliance: User,
    nurse: User,
    officer: Client,
    monkeypatch: pytest.MonkeyPatch,
    client_for: Callable[[User], Client],
) -> None:
    for _ in range(10):  # one event per chart view: enough for two pages of five
        assert client_for(nurse).get(reverse("records:chart", args=[trail.treated.pk])).status_code == 200
    monkeypatch.setattr("audit.reports.views.REPORT_PAGE_SIZE", 5)
    url = reverse("admin:audit_report_user")
    params = {"username": "nurse", **_period()}
    expected = list(AccessEvent.objects.filter(actor_id=nurse.pk).order_by("-at", "-id").values_list("id", flat=True))
    assert len(expected) > 5
    with one_trail_event(compliance) as event_written:
        first = officer.get(url, params)
    event = event_written.event
    assert [e.pk for e in first.context["page"].object_list] == expected[:5]
    assert event.patient_id is None
    assert event.detail == {
        "report": "user",
        "subject_user_id": nurse.pk,
        **_period(),
        "results": len(expected),
        "page": 1,
    }
    with one_trail_event(compliance) as second_event_written:
        second = officer.get(url, {**params, "p": 2})
    second_event = second_event_written.event
    assert [e.pk for e in second.context["page"].object_list] == expected[5:10]
    assert second_event.detail["page"] == 2
    # A name that is no account and in no event: nothing found, and the typed text is not kept.
    with one_trail_event(compliance) as ghost_written:
        ghost = officer.get(url, {**params, "username": "T500999"})
    assert ghost.context["page"].paginator.count == 0
    assert ghost_written.event.detail["subject_user_id"] is None
    assert ghost_written.event.detail["subject_username"] is None
    assert "Patient #" in first.content.decode()


def test_reports_export_as_streamed_csv(trail: Ward, compliance: User, nurse: User, officer: Client) -> None:
    for kind, params, patient_id in (
        ("patient", {"patient_id": str(trail.treated.pk), **_period()}, trail.treated.pk),
        ("user", {"username": "nurse", **_period()}, None),
    ):
        page = officer.get(reverse(f"admin:audit_report_{kind}"), params)
        assert "Export this report as CSV" in page.content.decode()
        expected = (
            AccessEvent.objects.filter(patient_id=patient_id)
            if patient_id
            else AccessEvent.objects.filter(actor_id=nurse.pk)
        )
        ids = list(expected.order_by("-at", "-id").values_list("id", flat=True))
        with one_trail_event(compliance, "export") as event_written:
            rows = csv_rows(officer.get(reverse(f"admin:audit_report_{kind}_export"), params))
        event = event_written.event
        assert rows[0] == list(reports.REPORT_CSV_COLUMNS)
        # Every row of the period, newest first, without the export's own event.
        assert [int(row[0]) for row in rows[1:]] == ids
        assert event.detail["rows"] == len(ids)
        assert event.patient_id == patient_id
        assert officer.post(reverse(f"admin:audit_report_{kind}_export"), params).status_code == 405


def test_app_index_and_access_list_link_the_reports(officer: Client) -> None:
    for url in (reverse("admin:app_list", args=["audit"]), changelist("accessevent")):
        page = officer.get(url).content.decode()
        assert reverse("admin:audit_report_patient") in page
        assert reverse("admin:audit_report_user") in page


# --- Who may enter; fail closed --------------------------------------------------------------------------


def _every_url(event: AccessEvent) -> list[str]:
    event_id, patient_id = event.pk, event.patient_id or 1
    period = "date_from=2000-01-01&date_to=2100-01-01"
    return [
        reverse("admin:app_list", args=["audit"]),
        *(changelist(model) for model in MODELS),
        *(export_url(model) for model in MODELS),
        reverse("admin:audit_accessevent_change", args=[event_id]),
        f"{reverse('admin:audit_report_patient')}?patient_id={patient_id}&{period}",
        f"{reverse('admin:audit_report_patient_export')}?patient_id={patient_id}&{period}",
        f"{reverse('admin:audit_report_user')}?username=nurse&{period}",
        f"{reverse('admin:audit_report_user_export')}?username=nurse&{period}",
    ]


@pytest.mark.parametrize("persona_name", ["physician", "security"])
def test_other_roles_cannot_reach_any_of_it(
    seen: AccessEvent, request: pytest.FixtureRequest, client_for: Callable[[User], Client], persona_name: str
) -> None:
    # Security analysts hold view_audit, but not the admin site: they review alerts elsewhere.
    client = client_for(request.getfixturevalue(persona_name))
    before = len(trail_events())
    for url in _every_url(seen):
        response = client.get(url)
        assert response.status_code in (302, 403, 404), url
        assert not isinstance(response, StreamingHttpResponse)
        if response.status_code == 302:
            assert not response["Location"].startswith("/admin/audit/")
    assert len(trail_events()) == before


def test_nothing_is_shown_when_the_view_cannot_be_recorded(
    seen: AccessEvent, officer: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(**kwargs: object) -> None:
        raise RuntimeError("audit store unavailable")

    monkeypatch.setattr("audit.reports.trail.access_event_record", broken)
    for url in _every_url(seen)[1:]:
        with pytest.raises(RuntimeError):
            officer.get(url)


def test_change_history_is_read_only_for_compliance(trail: Ward, compliance: User, officer: Client) -> None:
    from auditlog.models import LogEntry

    assert LogEntry.objects.exists()
    url = reverse("admin:auditlog_logentry_changelist")
    assert officer.get(url).status_code == 200
    entry = LogEntry.objects.first()
    assert entry is not None
    assert officer.post(reverse("admin:auditlog_logentry_delete", args=[entry.pk]), {"post": "yes"}).status_code == 403
    assert LogEntry.objects.filter(pk=entry.pk).exists()
