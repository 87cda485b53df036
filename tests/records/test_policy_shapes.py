"""The policy's relationship query compiled once per shape (records/permissions.py, healthcrypt/shaped.py).

A kept shape must decide exactly as the query built afresh would, for every patient, user, ward and
instant; a shape that would carry the first caller's values to the next must never be kept.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from accounts.models import User
from accounts.roles import Role
from healthcrypt import shaped
from records import permissions
from records.models import Encounter, Patient
from records.permissions import chart_access
from records.services import care_assignment_end, encounter_admit
from tests.factories import DepartmentFactory, PatientFactory, UserFactory, assign

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
    encounter_admit(
        actor=None,
        patient_id=attended.pk,
        kind=Encounter.Kind.INPATIENT,
        department=ward_b,
        attending=doctor,
        reason="Observation",
        starts_at=timezone.now() - datetime.timedelta(hours=2),
    )
    encounter_admit(
        actor=None,
        patient_id=on_ward_a.pk,
        kind=Encounter.Kind.INPATIENT,
        department=ward_a,
        attending=None,
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


def test_first_instance_refuses_a_query_with_related_rows() -> None:
    patient = PatientFactory()
    compiled = shaped.compile_shape(
        Patient.objects.filter(pk=shaped.PLACEHOLDERS["patient_id"][0]).select_related("portal_user"),
        ("patient_id",),
        required=("patient_id",),
        alias=DEFAULT_DB_ALIAS,
    )
    assert compiled is not None
    with pytest.raises(TypeError):
        shaped.first_instance(compiled, {"patient_id": patient.pk}, DEFAULT_DB_ALIAS)
