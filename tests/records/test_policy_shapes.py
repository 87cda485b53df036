"""The policy's relationship query compiled once per shape (records/permissions.py, healthcrypt/shaped.py).

A kept shape must decide exactly as the query built afresh would, for every patient, user, ward and
instant; a shape that would carry the first caller's values to the next must never be kept.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import User
from accounts.roles import Role
from healthcrypt import shaped
from healthcrypt.crypto import DecryptionError
from records import permissions
from records.models import Encounter, Observation, Patient
from records.permissions import chart_access
from records.selectors import access
from records.selectors.access import _with_staff
from records.services import care_assignment_end, encounter_admit, observation_record
from tests.factories import DepartmentFactory, PatientFactory, UserFactory, assign
from tests.records.test_sections_union import set_raw

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_kept_shapes() -> Iterator[None]:
    connections[DEFAULT_DB_ALIAS].__dict__.pop(permissions._SHAPES, None)
    yield
    connections[DEFAULT_DB_ALIAS].__dict__.pop(permissions._SHAPES, None)


def fresh(user: User, patient_id: int, at: datetime.datetime, *, with_patient: bool = False) -> Any:
    """What the ordinary query (built for these values) says."""
    connections[DEFAULT_DB_ALIAS].__dict__.pop(permissions._SHAPES, None)
    shapes = shaped.kept(DEFAULT_DB_ALIAS, permissions._SHAPES)
    for ward in (False, True):
        for patient_row in (False, True):
            shapes[("relationships", ward, patient_row)] = None  # as if not kept: built each time
    decision = chart_access(user, patient_id, at=at, with_patient=with_patient)
    connections[DEFAULT_DB_ALIAS].__dict__.pop(permissions._SHAPES, None)
    return decision


def test_a_kept_relationship_shape_decides_as_the_fresh_query_for_every_patient_user_ward_and_instant(
    django_assert_num_queries: Any,
) -> None:
    ward_a = DepartmentFactory(code="ward-a", kind="ward")
    ward_b = DepartmentFactory(code="ward-b", kind="ward")
    doctor = UserFactory(role=Role.PHYSICIAN, username="doc")
    nurse_a = UserFactory(role=Role.NURSE, username="nurse-a", department=ward_a)
    nurse_b = UserFactory(role=Role.NURSE, username="nurse-b", department=ward_b)
    on_team, attended, on_ward_a, stranger = (PatientFactory() for _ in range(4))
    assignment = assign(doctor, on_team)
    assign(nurse_b, on_team, "primary_nurse")
    for patient, ward, attending in ((attended, ward_b, doctor), (on_ward_a, ward_a, None)):
        encounter_admit(
            actor=None,
            patient_id=patient.pk,
            kind=Encounter.Kind.INPATIENT,
            department=ward,
            attending=attending,
            reason="Observation",
            starts_at=timezone.now() - datetime.timedelta(hours=2),
        )
    now = timezone.now()
    before_the_team = now - datetime.timedelta(days=2)
    cases = [
        (user, patient.pk, at, with_patient)
        for user in (doctor, nurse_a, nurse_b)
        for patient in (on_team, attended, on_ward_a, stranger)
        for at in (now, before_the_team)
        for with_patient in (False, True)
    ]
    cases.append((doctor, -1, now, False))  # no such patient
    expected = [fresh(*case[:3], with_patient=case[3]) for case in cases]
    # Kept now: every case decided by the shapes compiled at their first use, in one query each.
    for case, decision in zip(cases, expected, strict=True):
        with django_assert_num_queries(1 if decision.allowed else 2):  # the grant fallback when refused
            assert chart_access(case[0], case[1], at=case[2], with_patient=case[3]) == decision
    kept = shaped.kept(DEFAULT_DB_ALIAS, permissions._SHAPES)
    assert set(kept) == {("relationships", ward, row) for ward in (False, True) for row in (False, True)}
    assert all(shape is not None for shape in kept.values())
    # The answers the shapes gave are the real ones, not all refusals or all allowances.
    explanations = {(c[0].username, c[1], c[2] == now): d.explanation for c, d in zip(cases, expected, strict=True)}
    assert explanations[("doc", on_team.pk, True)] == "care_team"
    assert explanations[("doc", on_team.pk, False)] == "no_relationship"  # the clock is bound, not frozen
    assert explanations[("doc", attended.pk, True)] == "attending"
    assert explanations[("nurse-a", on_ward_a.pk, True)] == "ward"
    assert explanations[("nurse-b", on_ward_a.pk, True)] == "no_relationship"  # the ward is bound
    assert explanations[("nurse-b", attended.pk, True)] == "ward"
    assert explanations[("doc", stranger.pk, True)] == "no_relationship"
    # An assignment ended after the shape was kept ends the access at once.
    care_assignment_end(actor=None, patient_id=on_team.pk, assignment_id=assignment.pk)
    assert chart_access(doctor, on_team.pk).explanation == "no_relationship"


def test_a_kept_shape_carries_the_patients_row_sealed_and_its_own() -> None:
    doctor = UserFactory(role=Role.PHYSICIAN, username="doc")
    first, second = PatientFactory(family_name="Firstname"), PatientFactory(family_name="Secondname")
    assign(doctor, first)
    assign(doctor, second)
    for patient in (first, second):
        decision = chart_access(doctor, patient.pk, with_patient=True)
        assert isinstance(decision.patient, Patient)
        assert decision.patient.pk == patient.pk
        assert decision.patient.row_uid == patient.row_uid
        assert str(decision.patient.family_name) == patient.family_name
    assert chart_access(doctor, first.pk).patient is None


def test_a_shape_that_bakes_a_value_in_is_never_kept_and_still_decides_right(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A builder that ignores the patient it is given (so the placeholder never reaches the SQL) must
    not be kept: kept, it would answer every later request with the first patient's relationships."""
    doctor = UserFactory(role=Role.PHYSICIAN, username="doc")
    mine, theirs = PatientFactory(), PatientFactory()
    assign(doctor, mine)
    ordinary = permissions._relationships

    def baked(*, patient_id: int, **values: Any) -> Any:
        return ordinary(patient_id=mine.pk if patient_id < 0 else patient_id, **values)

    monkeypatch.setattr(permissions, "_relationships", baked)
    assert chart_access(doctor, mine.pk).explanation == "care_team"
    assert chart_access(doctor, theirs.pk).explanation == "no_relationship"
    assert shaped.kept(DEFAULT_DB_ALIAS, permissions._SHAPES)[("relationships", False, False)] is None
    assert "not kept" in caplog.text


def test_a_shape_whose_value_is_written_into_the_sql_is_not_kept() -> None:
    # Deliberately a value written into the SQL text (a constant of this module, no input).
    built = Patient.objects.filter(pk=shaped.PLACEHOLDERS["patient_id"][0]).extra(  # noqa: S610
        where=[f"id <> {shaped.PLACEHOLDERS['user_id'][0]}"]
    )
    assert (
        shaped.compile_shape(built, ("patient_id", "user_id"), required=("patient_id",), alias=DEFAULT_DB_ALIAS) is None
    )
    kept = shaped.compile_shape(
        Patient.objects.filter(pk=shaped.PLACEHOLDERS["patient_id"][0]),
        ("patient_id",),
        required=("patient_id",),
        alias=DEFAULT_DB_ALIAS,
    )
    assert kept is not None


def test_first_instance_reads_related_rows_as_the_queryset_does(patient_user: User) -> None:
    patient = PatientFactory()
    patient.portal_user = patient_user
    patient.save(update_fields=["portal_user"])
    compiled = shaped.compile_shape(
        Patient.objects.filter(pk=shaped.PLACEHOLDERS["patient_id"][0]).select_related("portal_user"),
        ("patient_id",),
        required=("patient_id",),
        alias=DEFAULT_DB_ALIAS,
    )
    assert compiled is not None
    row = shaped.first_instance(compiled, {"patient_id": patient.pk}, DEFAULT_DB_ALIAS)
    with CaptureQueriesContext(connection) as queries:
        assert row.portal_user.username == patient_user.username
    assert queries.captured_queries == []
    assert shaped.first_instance(compiled, {"patient_id": -1}, DEFAULT_DB_ALIAS) is None


# --- A chart's pages compiled once per shape (records/selectors/access.py _paged_shaped) ---------------


def _observations(doctor: User, patient: Patient, n: int, *, vital: bool = True) -> None:
    start = timezone.now() - datetime.timedelta(hours=n + 1)
    for i in range(n):
        observation_record(
            actor=doctor,
            patient_id=patient.pk,
            category=Observation.Category.VITAL_SIGNS if vital else Observation.Category.LABORATORY,
            display=f"{patient.family_name} reading {i}",
            value=str(60 + i),
            unit="/min",
            loinc_code="8867-4",
            effective_at=start + datetime.timedelta(hours=i),
        )


def _rows(patient_id: int) -> tuple[Any, Any]:
    observations = _with_staff(Observation.objects.filter(patient_id=patient_id), "recorded_by")
    return observations, observations.order_by("-effective_at", "-id")[:4]


def _seen(paged: tuple[Any, list[Any], list[Any]]) -> tuple[Any, list[Any], list[Any]]:
    page, rows, also = paged
    return (
        (page.number, page.total),
        [(o.pk, str(o.display), o.recorded_by.last_name) for o in rows],
        [o.pk for o in also],
    )


@pytest.fixture
def _no_kept_pages() -> Iterator[None]:
    connections[DEFAULT_DB_ALIAS].__dict__.pop(access._PAGE_SHAPES, None)
    yield
    connections[DEFAULT_DB_ALIAS].__dict__.pop(access._PAGE_SHAPES, None)


NEWEST = ("-effective_at", "-id")


@pytest.mark.usefixtures("_no_kept_pages")
def test_a_kept_page_reads_what_the_fresh_query_reads_for_every_patient_and_page() -> None:
    doctor = UserFactory(role=Role.PHYSICIAN, username="doc")
    first, second, empty = (PatientFactory(family_name=name) for name in ("Firstname", "Secondname", "Emptyname"))
    for patient in (first, second):
        assign(doctor, patient)
    _observations(doctor, first, 7)
    _observations(doctor, second, 3)
    for patient in (first, second, empty, first):
        for number in (1, 2, 3, 9, "x"):
            with CaptureQueriesContext(connection) as queries:
                kept = access._paged_shaped("test", _rows, {"patient_id": patient.pk}, NEWEST, number, 3)
            fresh = access._paged(*_rows(patient.pk)[:1], NEWEST, number, 3, also=_rows(patient.pk)[1])
            assert _seen(kept) == _seen(fresh)
            readings = {first: 7, second: 3}.get(patient, 0)
            past_the_end = str(number).isdigit() and int(str(number)) > 1 and (int(str(number)) - 1) * 3 >= readings
            if not past_the_end:
                assert len(queries.captured_queries) == 1
    shapes = shaped.kept(DEFAULT_DB_ALIAS, access._PAGE_SHAPES)
    assert all(compiled is not None for compiled in shapes.values())
    # The patient is bound: the second patient's page shows only their readings.
    _, rows, also = access._paged_shaped("test", _rows, {"patient_id": second.pk}, NEWEST, 1, 3)
    assert [str(o.display) for o in rows] == ["Secondname reading 2", "Secondname reading 1", "Secondname reading 0"]
    assert {o.patient_id for o in also} == {second.pk}
    # A page past the end shows the last page, as the fresh query does.
    page, rows, _ = access._paged_shaped("test", _rows, {"patient_id": first.pk}, NEWEST, 9, 3)
    assert (page.number, [str(o.display) for o in rows]) == (3, ["Firstname reading 0"])


@pytest.mark.usefixtures("_no_kept_pages")
def test_a_page_number_from_the_url_does_not_grow_the_kept_shapes() -> None:
    patient = PatientFactory()
    for number in range(1, 60):
        access._paged_shaped("test", _rows, {"patient_id": patient.pk}, NEWEST, number, 3)
    access._paged_shaped("test", _rows, {"patient_id": patient.pk}, NEWEST, 10**12, 3)
    assert len(shaped.kept(DEFAULT_DB_ALIAS, access._PAGE_SHAPES)) == access.KEPT_PAGES


@pytest.mark.usefixtures("_no_kept_pages")
def test_a_page_that_bakes_the_patient_in_is_never_kept(caplog: pytest.LogCaptureFixture) -> None:
    doctor = UserFactory(role=Role.PHYSICIAN, username="doc")
    mine, theirs = PatientFactory(family_name="Minename"), PatientFactory(family_name="Theirname")
    for patient in (mine, theirs):
        assign(doctor, patient)
        _observations(doctor, patient, 2)

    def baked(patient_id: int) -> tuple[Any, Any]:
        return _rows(mine.pk if patient_id < 0 else patient_id)

    for patient in (mine, theirs):
        _, rows, _ = access._paged_shaped("baked", baked, {"patient_id": patient.pk}, NEWEST, 1, 5)
        assert {o.patient_id for o in rows} == {patient.pk}
    assert list(shaped.kept(DEFAULT_DB_ALIAS, access._PAGE_SHAPES).values()) == [None]
    assert "not kept" in caplog.text


@pytest.mark.usefixtures("_no_kept_pages")
def test_a_kept_page_still_refuses_a_value_copied_from_another_patients_row() -> None:
    doctor = UserFactory(role=Role.PHYSICIAN, username="doc")
    mine, theirs = PatientFactory(), PatientFactory()
    for patient in (mine, theirs):
        assign(doctor, patient)
        _observations(doctor, patient, 1)
    access._paged_shaped("test", _rows, {"patient_id": theirs.pk}, NEWEST, 1, 5)  # kept
    set_raw(
        "UPDATE records_observation SET value = (SELECT value FROM records_observation WHERE patient_id = %s) "
        "WHERE patient_id = %s",
        [theirs.pk, mine.pk],
    )
    _, rows, _ = access._paged_shaped("test", _rows, {"patient_id": mine.pk}, NEWEST, 1, 5)
    with pytest.raises(DecryptionError):
        str(rows[0].value)
