"""The chart page in a small, bounded number of queries (issue 11): where each one comes from, a bound
for a physician, a nurse and the emergency summary on a record with many rows of every kind, the
same count for 2 and for 40 rows (no query per row), no session write on a plain chart GET, and no
entry form built (nor its choices queried) for a role that may not use it."""

from __future__ import annotations

import datetime
import io
from collections.abc import Callable
from typing import Any

import pytest
import time_machine
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.middleware import LAST_SEEN_STEP_SECONDS
from accounts.models import User
from accounts.roles import Role
from records import breakglass
from records.db import mark_actor
from records.demo_clinical import tiny_png
from records.models import Encounter, Immunization, Observation, Order, Procedure
from records.selectors import OBSERVATIONS_PER_PAGE
from records.services import (
    allergy_record,
    attachment_upload,
    condition_record,
    encounter_admit,
    medication_administer,
    medication_prescribe,
    note_write,
    observation_record,
    order_place,
)
from tests.accounts.helpers import current_code
from tests.conftest import totp_device
from tests.factories import UserFactory
from tests.records.conftest import Ward

pytestmark = pytest.mark.django_db

# Where the queries of a chart GET come from, as a test counts them (savepoints included). Issue 11
# measured 32-37 (36 for this physician); the target, asserted below, is 15.
REQUEST = 3  # the session, the user, the user's authenticator (django-otp checks it on every request)
ATOMIC_REQUEST = 2  # ATOMIC_REQUESTS: a savepoint and its release here; BEGIN/COMMIT in production
POLICY = 1  # chart_access: every relationship, and the patient's row (sealed), in one query
ACCESS_EVENT = 1  # one INSERT of the view's events (sealed later, off the request path)
# The inline anomaly rules: their savepoint, one UNION ALL (the actor's own record, the actor's and
# department's baselines, the actor's last hour; radiology's and lab's open orders), its release. The
# patient's facts come with the policy's row (sealed), carried in the access signal.
RULES = 3
# The small sections (stays, conditions, allergies, medications, doses given, orders, images,
# procedures, immunizations, care team) in one UNION ALL (records/selectors/sections.py); the
# observations (the page, its total and the trend readings) in one; the notes (page and total) in one.
SECTIONS = 3
CHART_QUERIES = REQUEST + ATOMIC_REQUEST + POLICY + ACCESS_EVENT + RULES + SECTIONS
TARGET = 15  # issue 11's bound for a chart page
# The summary: allergies, active medications, problems, last vitals, recent stays, in one UNION ALL. No
# grant read of its own: the policy's decision carries the grant it found, and the patient's row with it.
EMERGENCY_QUERIES = REQUEST + ATOMIC_REQUEST + POLICY + ACCESS_EVENT + RULES + 1

KINDS = 10  # observations, notes, conditions, medications (+ a dose each), allergies, orders (+ an image
# each), stays, procedures, immunizations


def fill_record(ward: Ward, physician: User, nurse: User, radiology: User, rows: int, *, first: int = 0) -> None:
    """``rows`` rows of every kind the chart shows, on the treated patient, through the services
    (numbered from ``first``: the same allergy twice is refused)."""
    pid = ward.treated.pk
    start = timezone.now() - datetime.timedelta(days=first + rows + 1)
    for i in range(first, first + rows):
        observation_record(
            actor=nurse,
            patient_id=pid,
            category=Observation.Category.VITAL_SIGNS,
            display="Heart rate",
            value=str(60 + i % 50),
            unit="/min",
            loinc_code="8867-4",
        )
        note_write(actor=physician, patient_id=pid, kind="progress", text=f"Progress note {i}")
        condition_record(actor=physician, patient_id=pid, display=f"Condition {i}")
        medication = medication_prescribe(actor=physician, patient_id=pid, display=f"Drug {i}", dosage="daily")
        medication_administer(actor=nurse, patient_id=pid, medication_id=medication.pk, dose="1 tablet")
        allergy_record(actor=physician, patient_id=pid, code="", substance=f"Substance {i}", reaction="", severity="")
        order = order_place(
            actor=physician,
            patient_id=pid,
            kind=Order.Kind.RADIOLOGY,
            department=radiology.department,
            description=f"X-ray {i}",
        )
        attachment_upload(
            actor=radiology,
            order_id=order.pk,
            source=io.BytesIO(tiny_png(1)),
            filename="image.png",
            content_type="image/png",
            max_bytes=1_000_000,
        )
        encounter_admit(
            actor=None,
            patient_id=pid,
            kind=Encounter.Kind.AMBULATORY,
            department=nurse.department,
            attending=physician,
            reason="Follow-up",
            starts_at=start + datetime.timedelta(days=i),
        )
        # Procedures and immunizations arrive by import only (no service writes them).
        with transaction.atomic():
            mark_actor(None, job="test")
            Procedure.objects.create(patient_id=pid, display=f"Procedure {i}", performed_at=start)
            Immunization.objects.create(patient_id=pid, display=f"Vaccine {i}", occurred_at=start)


def count(client: Client, url: str) -> list[str]:
    """The SQL of one GET (which must succeed)."""
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return [q["sql"] for q in captured.captured_queries]


@pytest.fixture
def chart_url(ward: Ward) -> str:
    return reverse("records:chart", args=[ward.treated.pk])


@pytest.fixture
def full_record(ward: Ward, physician: User, nurse: User, radiology: User) -> Ward:
    fill_record(ward, physician, nurse, radiology, 40)
    return ward


# --- The bound ------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["physician", "nurse"])
def test_a_chart_with_many_rows_of_every_kind_stays_within_the_bound(
    full_record: Ward,
    chart_url: str,
    role: str,
    request: pytest.FixtureRequest,
    client_for: Callable[[User], Client],
) -> None:
    client = client_for(request.getfixturevalue(role))
    queries = count(client, chart_url)
    assert len(queries) <= CHART_QUERIES <= TARGET, "\n".join(queries)
    # Every section really came back, paged where it pages.
    chart = client.get(chart_url).context["chart"]
    assert len(chart.observations) == 40
    assert chart.notes_page.total == 40
    assert (len(chart.medications), len(chart.administrations)) == (41, 40)  # the ward's aspirin too
    assert (len(chart.attachments), len(chart.procedures), len(chart.immunizations)) == (40, 40, 40)


@pytest.mark.parametrize("role", ["physician", "nurse"])
def test_with_the_rules_at_the_sealer_a_chart_costs_the_same_minus_the_rules_queries(
    full_record: Ward,
    chart_url: str,
    role: str,
    request: pytest.FixtureRequest,
    client_for: Callable[[User], Client],
    settings: Any,
) -> None:
    """ANOMALY_RULES_AT = "sealer" (audit/detection/nearline.py): the request writes its events and
    judges nothing; the sealer judges them after sealing."""
    client = client_for(request.getfixturevalue(role))
    settings.ANOMALY_RULES_AT = "request"
    in_request = count(client, chart_url)
    settings.ANOMALY_RULES_AT = "sealer"
    at_sealer = count(client, chart_url)
    assert len(at_sealer) == len(in_request) - RULES, "\n".join(at_sealer)
    assert len(at_sealer) <= CHART_QUERIES - RULES


@pytest.mark.parametrize("role", ["physician", "nurse"])
def test_the_chart_query_count_is_the_same_for_2_and_40_rows_of_every_kind(
    ward: Ward,
    physician: User,
    nurse: User,
    radiology: User,
    chart_url: str,
    role: str,
    request: pytest.FixtureRequest,
    client_for: Callable[[User], Client],
) -> None:
    client = client_for(request.getfixturevalue(role))
    fill_record(ward, physician, nurse, radiology, 2)
    few = count(client, chart_url)
    fill_record(ward, physician, nurse, radiology, 38, first=2)
    many = count(client, chart_url)
    assert len(many) == len(few), "\n".join(many)


def test_a_ward_nurse_without_an_assignment_costs_no_more_policy_queries(
    ward: Ward,
    nurse: User,
    chart_url: str,
    client_for: Callable[[User], Client],
) -> None:
    """Care team, attending and ward are asked in one query: the nurse who is there because the patient
    is on her ward (the third relationship asked) pays what the assigned nurse pays."""
    ward_nurse = UserFactory(username="ward_nurse", role=Role.NURSE, department=nurse.department)
    assigned = count(client_for(nurse), chart_url)
    on_the_ward = client_for(ward_nurse).get(chart_url)
    assert on_the_ward.context["chart"].explanation == "ward"
    assert len(count(client_for(ward_nurse), chart_url)) == len(assigned)


@pytest.fixture
def grant_for_ems(ward: Ward, ems: User) -> None:
    breakglass.break_glass_grant(
        actor=ems,
        patient_id=ward.treated.pk,
        reason="emergency_treatment",
        explanation="Unconscious on arrival, no history available from anyone present.",
        code=current_code(totp_device(ems)),
    )


def test_the_emergency_summary_stays_within_its_bound_and_does_not_grow(
    grant_for_ems: None,
    ward: Ward,
    ems: User,
    physician: User,
    nurse: User,
    radiology: User,
    client_for: Callable[[User], Client],
) -> None:
    client = client_for(ems)
    url = reverse("records:emergency_summary", args=[ward.treated.pk])
    fill_record(ward, physician, nurse, radiology, 2)
    few = count(client, url)
    fill_record(ward, physician, nurse, radiology, 38, first=2)
    many = count(client, url)
    assert len(many) == len(few) <= EMERGENCY_QUERIES, "\n".join(many)
    # The grant is read once, by the policy, not again for the banner.
    assert sum('FROM "records_breakglassgrant"' in q for q in many) == 1
    assert client.get(url).context["chart"].grant is not None


# --- Paging and trends from the one observations query -------------------------------------------


def test_a_page_past_the_end_shows_the_last_page_and_the_trends(
    ward: Ward, nurse: User, physician: User, chart_url: str, client_for: Callable[[User], Client]
) -> None:
    for i in range(OBSERVATIONS_PER_PAGE + 5):
        observation_record(
            actor=nurse,
            patient_id=ward.treated.pk,
            category=Observation.Category.VITAL_SIGNS,
            display="Heart rate",
            value=str(60 + i),
            unit="/min",
            loinc_code="8867-4",
        )
    client = client_for(physician)
    last = client.get(chart_url + "?obs_page=99").context["chart"]
    assert (last.observations_page.number, last.observations_page.total) == (2, OBSERVATIONS_PER_PAGE + 5)
    assert len(last.observations) == 5
    # The trend readings are the newest ones, whatever page the table is on.
    first = client.get(chart_url).context["chart"]
    assert [t.readings for t in last.vital_trends] == [t.readings for t in first.vital_trends]
    assert first.vital_trends[0].latest.value == str(60 + OBSERVATIONS_PER_PAGE + 4)


def test_a_chart_without_observations_or_notes_has_empty_pages(
    ward: Ward, physician: User, chart_url: str, client_for: Callable[[User], Client]
) -> None:
    chart = client_for(physician).get(chart_url + "?obs_page=3&notes_page=2").context["chart"]
    assert (chart.observations, chart.observations_page.total, chart.observations_page.number) == ((), 0, 1)
    assert (chart.notes, chart.notes_page.total, chart.notes_page.number) == ((), 0, 1)
    assert chart.vital_trends == ()


# --- The session: not written on a plain chart GET -----------------------------------------------


def session_writes(queries: list[str]) -> list[str]:
    return [q for q in queries if "django_session" in q and not q.lstrip().upper().startswith("SELECT")]


def test_two_chart_gets_within_the_step_write_the_session_zero_times(
    ward: Ward, physician: User, chart_url: str, client_for: Callable[[User], Client]
) -> None:
    with time_machine.travel(timezone.now(), tick=False) as clock:
        client = client_for(physician)
        clock.shift(datetime.timedelta(seconds=1))
        first = count(client, chart_url)
        clock.shift(datetime.timedelta(seconds=LAST_SEEN_STEP_SECONDS - 5))
        second = count(client, chart_url)
        assert session_writes(first + second) == []
        # The detector works: once the idle clock is a step old, the next GET moves it, once.
        clock.shift(datetime.timedelta(seconds=10))
        assert len(session_writes(count(client, chart_url))) == 1


# --- Forms only where they are used ----------------------------------------------------------------


def test_a_chart_get_builds_only_the_forms_the_role_may_use_and_queries_no_choices(
    ward: Ward, nurse: User, physician: User, chart_url: str, client_for: Callable[[User], Client]
) -> None:
    nurse_page = client_for(nurse).get(chart_url)
    assert {"vitals_form", "note_form", "allergy_form"} <= set(nurse_page.context.keys())
    for absent in ("prescription_form", "condition_form", "order_form", "administer_form"):
        assert absent not in nurse_page.context
    physician_queries = count(client_for(physician), chart_url)
    # The order form's department list is read on the order page, not on every chart.
    assert not [q for q in physician_queries if 'FROM "accounts_department"' in q]
    html = client_for(physician).get(chart_url).content.decode()
    assert f'href="{reverse("records:order_form", args=[ward.treated.pk])}"' in html


def test_the_order_page_shows_the_banner_and_posts_to_order_new(
    ward: Ward, physician: User, radiology: User, client_for: Callable[[User], Client]
) -> None:
    from audit.models import AccessEvent

    pid = ward.treated.pk
    before = AccessEvent.objects.count()
    response = client_for(physician).get(reverse("records:order_form", args=[pid]))
    assert response.status_code == 200
    html = response.content.decode()
    assert ward.treated.family_name.upper() in html  # the banner names the patient
    assert f'action="{reverse("records:order_new", args=[pid])}"' in html
    assert radiology.department is not None
    assert radiology.department.name in html
    # The banner is a read of the record, recorded like any other.
    assert AccessEvent.objects.filter(pk__gt=before, patient_id=pid, action="view").exists()
    posted = client_for(physician).post(
        reverse("records:order_new", args=[pid]),
        {
            "kind": Order.Kind.RADIOLOGY,
            "department": radiology.department.pk,
            "description": "CT head",
            "priority": Order.Priority.ROUTINE,
        },
    )
    assert posted.status_code == 302
    assert Order.objects.filter(patient_id=pid, status=Order.Status.OPEN).count() == 3


def test_the_order_page_is_a_404_for_a_patient_one_does_not_treat(
    ward: Ward, physician: User, client_for: Callable[[User], Client]
) -> None:
    assert client_for(physician).get(reverse("records:order_form", args=[ward.other.pk])).status_code == 404


# --- A department working from an order: the union keeps the order's scope ----------------------------


def test_radiology_working_from_an_order_sees_only_that_orders_work_in_the_one_sections_query(
    ward: Ward, physician: User, radiology: User
) -> None:
    from records.selectors import chart_for

    attachment_upload(
        actor=radiology,
        order_id=ward.radiology_order.pk,
        source=io.BytesIO(tiny_png(1)),
        filename="image.png",
        content_type="image/png",
        max_bytes=1_000_000,
    )
    chart = chart_for(actor=radiology, patient_id=ward.treated.pk)
    assert chart.explanation == "order"
    assert [o.id for o in chart.orders] == [ward.radiology_order.pk]  # not the lab order
    assert [(a.order_id, a.filename) for a in chart.attachments] == [(ward.radiology_order.pk, "image.png")]
    # The physician on the care team sees both orders.
    assert {o.id for o in chart_for(actor=physician, patient_id=ward.treated.pk).orders} == {
        ward.radiology_order.pk,
        ward.lab_order.pk,
    }


def test_recording_vitals_asks_nothing_twice(ward: Ward, nurse: User, client_for: Any) -> None:
    """A set of three vitals: the relationship checked once by the page and once by the service (not
    once more per reading), one savepoint and one mark for the set, and no existence query for the
    patient, the nurse or the fresh row_uid (the relationship check read the patient, the nurse is
    signed in, a uuid4 is new). Issue 11: 47 queries on PostgreSQL; 32 without the existence queries
    and the second mark per reading; now one check, savepoint and mark per set."""
    client = client_for(nurse)
    url = reverse("records:vitals_new", args=[ward.treated.pk])
    client.post(url, {"heart_rate": "70", "systolic": "120", "diastolic": "70"})  # the session's first write
    with CaptureQueriesContext(connection) as captured:
        response = client.post(url, {"heart_rate": "71", "systolic": "121", "diastolic": "70"})
    assert response.status_code == 302
    assert Observation.objects.filter(patient=ward.treated).count() == 6
    queries = [q["sql"] for q in captured.captured_queries]
    assert [q for q in queries if q.startswith('SELECT 1 AS "a" FROM')] == []
    assert sum(q.startswith('SELECT "records_patient"."id", EXISTS(') for q in queries) == 2
    assert sum(q.startswith('INSERT INTO "records_observation"') for q in queries) == 3
    if connection.vendor == "postgresql":
        assert sum("txid_current" in q for q in queries) == 1
        assert len(queries) <= 22


def test_a_set_of_vitals_is_all_or_nothing(ward: Ward, nurse: User, monkeypatch: pytest.MonkeyPatch) -> None:
    from records.services import clinical, vitals_record

    original = clinical._observation_create
    calls = []

    def third_fails(**kwargs: Any) -> Observation:
        calls.append(kwargs["display"])
        if len(calls) == 3:
            raise RuntimeError("the database went away")
        return original(**kwargs)

    monkeypatch.setattr(clinical, "_observation_create", third_fails)
    readings = [
        ("8867-4", "Heart rate", "/min", "70"),
        ("8480-6", "Systolic", "mm[Hg]", "120"),
        ("8462-4", "Diastolic", "mm[Hg]", "70"),
    ]
    with pytest.raises(RuntimeError):
        vitals_record(actor=nurse, patient_id=ward.treated.pk, readings=readings)
    assert not Observation.objects.filter(patient=ward.treated).exists()


def test_a_result_for_an_unknown_patient_is_still_refused_by_validation(lab: User) -> None:
    """A system caller's patient was not read by a relationship check: it is still validated."""
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as refused:
        observation_record(
            actor=None, patient_id=987654, category=Observation.Category.VITAL_SIGNS, display="Heart rate", value="70"
        )
    assert "patient" in refused.value.message_dict
