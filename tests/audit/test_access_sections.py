"""One access event per patient per view, listing the sections the view showed (issue 11).

The event count and the sections are what every reader of the trail now relies on: the rules
("did this access show images?"), the admin's section filter, the reports. Events written before
(one per section, ``sections`` empty) must still be judged and shown, through their category.
"""

from __future__ import annotations

import csv
import datetime
import io
from collections.abc import Callable

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from accounts.roles import DataCategory
from audit import detection
from audit.chain import seal_and_insert
from audit.facts import sections_of
from audit.models import AccessEvent, Alert, AlertSubject
from audit.services import access_event_record
from records.models import Observation, Order
from records.selectors import chart_for
from records.services import observation_record, order_complete, order_place
from tests.factories import PatientFactory, assign
from tests.records.conftest import Ward

pytestmark = pytest.mark.django_db


def _new_events(before: int) -> list[AccessEvent]:
    return list(AccessEvent.objects.filter(pk__gt=before).order_by("id"))


def _last_id() -> int:
    return AccessEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


# --- The read path writes one event per patient, with exactly the sections shown -------------------


@pytest.mark.parametrize("role", ["physician", "nurse"])
def test_chart_view_writes_one_event_with_exactly_the_sections_the_page_was_given(
    role: str, ward: Ward, request: pytest.FixtureRequest, client_for: Callable[[User], Client]
) -> None:
    user: User = request.getfixturevalue(role)
    before = _last_id()
    response = client_for(user).get(reverse("records:chart", args=[ward.treated.pk]))
    assert response.status_code == 200
    (event,) = [e for e in _new_events(before) if e.patient_id is not None]
    # What the template was handed to draw (records/views/chart.py ``sees``), no more, no less.
    assert event.sections == sorted(response.context["sees"])
    assert (event.actor_id, event.patient_id, event.action) == (user.pk, ward.treated.pk, "view")
    assert event.category in event.sections


def test_radiology_chart_event_lists_only_what_radiology_may_see(
    ward: Ward, physician: User, radiology: User, client_for: Callable[[User], Client]
) -> None:
    assign(physician, ward.other)
    order_place(
        actor=physician,
        patient_id=ward.other.pk,
        kind=Order.Kind.RADIOLOGY,
        department=radiology.department,
        description="Chest X-ray",
    )
    before = _last_id()
    response = client_for(radiology).get(reverse("records:chart", args=[ward.other.pk]))
    assert response.status_code == 200
    (event,) = _new_events(before)
    assert event.sections == sorted(response.context["sees"])
    assert "imaging" in event.sections
    assert "medications" not in event.sections  # not radiology's to see, and not drawn
    assert 'id="section-medications"' not in response.content.decode()
    assert Alert.objects.filter(rule="order_without_open_order").count() == 0


def test_a_banner_read_lists_the_banners_sections_only(ward: Ward, physician: User) -> None:
    before = _last_id()
    chart_for(
        actor=physician, patient_id=ward.treated.pk, categories=[DataCategory.DEMOGRAPHICS, DataCategory.ALLERGIES]
    )
    (event,) = _new_events(before)
    assert event.sections == ["allergies", "demographics"]


def test_a_list_writes_one_event_per_patient_listed(
    ward: Ward, physician: User, client_for: Callable[[User], Client]
) -> None:
    assign(physician, ward.other)
    before = _last_id()
    response = client_for(physician).get(reverse("records:my_patients"))
    assert response.status_code == 200
    events = _new_events(before)
    assert sorted(e.patient_id for e in events) == sorted([ward.treated.pk, ward.other.pk])
    assert {(e.action, tuple(e.sections), e.category) for e in events} == {("list", ("demographics",), "demographics")}


def test_a_search_writes_the_search_and_one_result_event_per_patient_found(
    ward: Ward, front_desk: User, client_for: Callable[[User], Client]
) -> None:
    before = _last_id()
    response = client_for(front_desk).post(reverse("records:search"), {"mrn": ward.treated.mrn})
    assert response.status_code == 200
    events = _new_events(before)
    assert [(e.action, e.patient_id, e.sections) for e in events] == [
        ("search", None, ["demographics"]),
        ("search_result", ward.treated.pk, ["demographics"]),
    ]


def _dashboard_inserts(client: Client) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("accounts:dashboard"))
    assert response.status_code == 200
    inserts = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('INSERT INTO "audit_accessevent"')]
    return len(inserts), response.content.decode()


def test_a_dashboard_writes_one_event_per_patient_for_all_its_panels(
    ward: Ward, nurse: User, client_for: Callable[[User], Client]
) -> None:
    """The nurse's patient is on three panels (my patients, missing vitals, the ward list): one event,
    naming the page, the lists and every section they showed, written in one INSERT."""
    client = client_for(nurse)
    before = _last_id()
    inserts, html = _dashboard_inserts(client)
    assert html.count("TREATEDSURNAME") >= 3
    (event,) = _new_events(before)
    assert (event.patient_id, event.action, event.explanation) == (ward.treated.pk, "list", "ward")
    assert event.detail["list"] == "dashboard"
    assert {"my_patients", "missing_vitals", "ward"} <= set(event.detail["lists"])
    assert {"demographics", "encounters", "observations"} <= set(event.sections)
    assert inserts == 1


def test_a_physicians_dashboard_lists_each_patient_once_however_many_panels(
    ward: Ward, physician: User, lab: User, client_for: Callable[[User], Client]
) -> None:
    assign(physician, ward.other)
    observation_record(
        actor=lab,
        patient_id=ward.treated.pk,
        category=Observation.Category.LABORATORY,
        display="Potassium",
        value="7.1",
        unit="mmol/L",
        loinc_code="2823-3",  # 7.1 mmol/L: flagged critical high (HH) by its reference range
        order_id=ward.lab_order.pk,
    )
    order_complete(actor=lab, order_id=ward.lab_order.pk)
    before = _last_id()
    _dashboard_inserts(client_for(physician))
    events = _new_events(before)
    assert len(events) == 2
    assert {e.patient_id for e in events} == {ward.treated.pk, ward.other.pk}
    treated = next(e for e in events if e.patient_id == ward.treated.pk)
    assert {"critical_results", "new_results", "my_patients", "pending_orders"} <= set(treated.detail["lists"])
    assert {"demographics", "observations", "orders"} <= set(treated.sections)


def test_a_dashboard_whose_accesses_cannot_be_recorded_shows_nobody(
    ward: Ward, nurse: User, client_for: Callable[[User], Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(**kwargs: object) -> None:
        raise RuntimeError("the audit database is gone")

    client = client_for(nurse)
    monkeypatch.setattr("audit.services.access_event_record", broken)
    before = _last_id()
    response = client.get(reverse("accounts:dashboard"))
    assert response.status_code == 503
    assert "TREATEDSURNAME" not in response.content.decode()
    assert _new_events(before) == []


def test_sections_are_distinct_and_sorted_and_the_primary_is_the_first_named() -> None:
    (event,) = access_event_record(
        actor=None, patient_ids=[7], categories=["notes", "demographics", "notes", "allergies"], action="view"
    )
    assert (event.category, event.sections) == ("notes", ["allergies", "demographics", "notes"])


def test_several_patients_one_event_each_with_the_same_sections() -> None:
    events = access_event_record(actor=None, patient_ids=[1, 2, 3], categories=["demographics"], action="list")
    assert [(e.patient_id, e.sections) for e in events] == [(n, ["demographics"]) for n in (1, 2, 3)]


def test_an_access_naming_no_section_is_refused_and_writes_nothing() -> None:
    with pytest.raises(ValueError, match="at least one section"):
        access_event_record(actor=None, patient_ids=[7], categories=[], action="view")
    assert not AccessEvent.objects.exists()


# --- The admin's section filter (SQLite and PostgreSQL alike) --------------------------------------


@pytest.fixture
def officer(compliance: User, client_for: Callable[[User], Client]) -> Client:
    cache.clear()  # the filters' choice lists are cached
    return client_for(compliance)


def _listed(officer: Client, **params: str) -> set[int]:
    response = officer.get(reverse("admin:audit_accessevent_changelist"), params)
    assert response.status_code == 200
    return {event.pk for event in response.context["cl"].queryset}


def test_admin_section_filter_finds_an_event_by_a_section_that_is_not_its_primary(officer: Client) -> None:
    (imaging,) = access_event_record(
        actor=None, patient_ids=[7], categories=["demographics", "imaging", "orders"], action="view"
    )
    (care_team,) = access_event_record(actor=None, patient_ids=[8], categories=["care_team"], action="view")
    assert imaging.category == "demographics"
    assert imaging.pk in _listed(officer, section="imaging")
    assert imaging.pk in _listed(officer, section="orders")
    assert imaging.pk not in _listed(officer, section="notes")
    # An underscore is a LIKE wildcard: escaped, "care_team" matches itself only.
    assert _listed(officer, section="care_team") & {imaging.pk, care_team.pk} == {care_team.pk}


def test_admin_shows_the_sections_column_and_refuses_an_unknown_section(officer: Client) -> None:
    access_event_record(actor=None, patient_ids=[7], categories=["demographics", "imaging"], action="view")
    response = officer.get(reverse("admin:audit_accessevent_changelist"))
    assert "demographics, imaging" in response.content.decode()
    # Free text never reaches the query (nor the audit event of the view): the invalid-filter page.
    bad = officer.get(reverse("admin:audit_accessevent_changelist"), {"section": '"%'})
    assert bad.status_code == 302
    assert bad["Location"].endswith("?e=1")


# --- Events written one per section, before events listed them --------------------------------------


def _old_view(actor: User, patient_id: int, at: datetime.datetime, sections: tuple[str, ...]) -> list[AccessEvent]:
    """A chart view as the read path wrote it before: one event per section, one instant, no list."""
    return seal_and_insert(
        [
            AccessEvent(
                at=at,
                actor_id=actor.pk,
                actor_username=actor.username,
                actor_role=actor.role,
                patient_id=patient_id,
                category=section,
                action="view",
                explanation="order",
            )
            for section in sections
        ]
    )


def test_old_rows_read_as_their_category() -> None:
    assert sections_of({"category": "notes", "sections": []}) == ["notes"]
    assert sections_of({"category": "notes", "sections": ["demographics", "notes"]}) == ["demographics", "notes"]
    (row,) = seal_and_insert([AccessEvent(category="imaging", action="view")])
    assert (row.sections, row.shown_sections) == ([], ["imaging"])


def test_an_old_one_per_section_view_is_still_judged_once_with_all_its_sections(radiology: User) -> None:
    at = timezone.now() - datetime.timedelta(hours=1)
    with_images = _old_view(radiology, PatientFactory().pk, at, ("demographics", "imaging", "orders"))
    banner_only = _old_view(
        radiology, PatientFactory().pk, at + datetime.timedelta(minutes=5), ("allergies", "demographics")
    )
    outcome = detection.scan_accesses(since=at - datetime.timedelta(minutes=1), until=timezone.now())
    assert outcome.findings["order_without_open_order"] == 1
    alert = Alert.objects.get(rule="order_without_open_order")
    assert alert.patient_id == with_images[0].patient_id
    # The alert names every event of that view, as it did when views were written per section.
    assert set(AlertSubject.objects.filter(alert=alert).values_list("object_id", flat=True)) == {
        e.pk for e in with_images
    }
    assert not Alert.objects.filter(patient_id=banner_only[0].patient_id, rule="order_without_open_order").exists()


def test_old_rows_are_shown_and_filtered_by_their_category(radiology: User, officer: Client, compliance: User) -> None:
    old = _old_view(radiology, PatientFactory().pk, timezone.now(), ("demographics", "imaging"))
    imaging = next(e for e in old if e.category == "imaging")
    assert _listed(officer, section="imaging") & {e.pk for e in old} == {imaging.pk}
    response = officer.get(reverse("admin:audit_accessevent_change", args=[imaging.pk]))
    assert response.status_code == 200
    rows = list(
        csv.reader(
            io.StringIO(
                b"".join(
                    officer.get(reverse("admin:audit_accessevent_export"), {"actor_id": radiology.pk}).streaming_content
                ).decode()
            )
        )
    )
    column = rows[0].index("sections")
    by_id = {int(row[0]): row[column] for row in rows[1:]}
    assert by_id[imaging.pk] == '["imaging"]'


def test_the_alert_page_shows_the_sections_of_the_view_it_is_about(
    radiology: User, security: User, client_for: Callable[[User], Client]
) -> None:
    patient = PatientFactory()
    access_event_record(actor=radiology, patient_ids=[patient.pk], categories=["demographics"], action="list")
    (event,) = access_event_record(
        actor=radiology, patient_ids=[patient.pk], categories=["demographics", "imaging"], action="view"
    )
    detection.judge_new_accesses(radiology, [event])
    alert = Alert.objects.get(rule="order_without_open_order")
    assert list(AlertSubject.objects.filter(alert=alert).values_list("object_id", flat=True)) == [event.pk]
    html = client_for(security).get(reverse("security:alert", args=[alert.pk])).content.decode()
    assert "<td>demographics, imaging</td>" in html


def test_an_old_row_sealed_in_the_request_before_sections_existed_still_verifies() -> None:
    """A v1 row (hashed in the request, before audit 0009 and 0010) is checked over its v1 columns."""
    from audit.chain import GENESIS, AuditChainHead, link_hash_v1
    from audit.verify import verify_all

    values = {
        "at": timezone.now(), "actor_id": None, "actor_username": "", "actor_role": "", "patient_id": 7,
        "category": "notes", "action": "view", "purpose": "", "explanation": "", "detail": {}, "ip": None,
        "user_agent": "", "request_id": "", "session_ref": "",
    }  # fmt: skip
    digest = link_hash_v1(AccessEvent, values, 3, 1, GENESIS)
    AccessEvent.objects.bulk_create([AccessEvent(**values, partition=3, seq=1, prev_hash=GENESIS, hash=digest)])
    AuditChainHead.objects.create(stream="access", partition=3, last_seq=1, last_hash=digest)
    assert verify_all()[0] == []
    (row,) = AccessEvent.objects.filter(partition=3)
    assert (row.sections, row.shown_sections) == ([], ["notes"])


def test_an_event_stamped_between_the_sealer_and_sections_migrations_still_verifies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from audit import chain
    from audit.sealer import seal_events
    from audit.verify import verify_all

    plan = chain._plan(AccessEvent)
    keep = [i for i, name in enumerate(plan[0]) if name != "sections"]
    before = (tuple(plan[0][i] for i in keep), tuple(plan[1][i] for i in keep), plan[2])
    with monkeypatch.context() as patched:  # the columns the mac covered between the two migrations
        patched.setattr(chain, "_plan", lambda model: before if model is AccessEvent else plan)
        # As the service wrote it then: no sections (the column got its empty default from 0010).
        chain.insert_unsealed([AccessEvent(patient_id=7, category="notes", action="view")])
    # Sealed by today's sealer, which checks the mac with today's columns: an empty column is left out.
    seal_events()
    assert not AccessEvent.objects.filter(hash="").exists()
    assert verify_all()[0] == []


def test_judged_reads_a_list_of_sections_never_a_bare_category() -> None:
    from audit import rules

    assert rules.judged("view", ["demographics", "notes"], 7)
    assert not rules.judged("view", ["audit_trail"], 7)
    with pytest.raises(TypeError):
        rules.judged("view", "demographics", 7)
