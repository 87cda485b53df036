"""A panel's components (a blood pressure's systolic and diastolic rows) are tied to it by a column,
``Observation.panel``, not by their values: the export gives back exactly the rows that point to a
panel, a value that merely looks like a panel's is never taken for one, and migration 0012 links the
rows imported before the column by the rule the export used until then, on imported rows only."""

from __future__ import annotations

import datetime
import importlib
from types import SimpleNamespace

import pytest
from django.apps import apps as django_apps
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from accounts.models import User
from accounts.roles import DataCategory
from records.models import Observation, Patient
from records.selectors.export import ExportRecord, Page, _read, _windows
from records.services import imported_entries_create, observation_record
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db

AT = timezone.now() - datetime.timedelta(days=1)


def _row(patient: Patient, source: str, value: str, code: str = "85354-9", **more: object) -> Observation:
    fields: dict[str, object] = {
        "category": "vital-signs",
        "loinc_code": code,
        "display": "Blood pressure",
        "value": value,
        "unit": "mm[Hg]",
        "effective_at": AT,
    }
    return Observation(patient=patient, source_id=source, **{**fields, **more})


def _page(patient: Patient, page: Page) -> ExportRecord:
    """A page of the patient's observations, as the partner API reads it."""
    sections = frozenset({DataCategory.OBSERVATIONS})
    return _read(Patient.objects.get(pk=patient.pk), sections, _windows(patient.pk, sections, page))


def _typed_here(patient: Patient, value: str) -> Observation:
    return observation_record(
        actor=None,
        patient_id=patient.pk,
        category="vital-signs",
        display="Blood pressure",
        value=value,
        unit="mm[Hg]",
        effective_at=AT,
    )


def test_the_export_gives_back_the_rows_that_point_to_a_panel_and_nothing_that_looks_like_one(
    front_desk: User,
) -> None:
    patient = PatientFactory()
    panel = _row(patient, "bp", "120 / 80")
    imported_entries_create(
        actor=front_desk,
        entries=[
            panel,
            _row(patient, "s", "120", "8480-6", panel=panel),
            _row(patient, "d", "80", "8462-4", panel=panel),
        ],
    )
    # Typed here by a nurse: a value with the separator, then two values that match its parts.
    for value in ("130 / 85", "130", "85"):
        _typed_here(patient, value)

    observations = _read(patient).observations

    assert [(o.value, [c.value for c in o.components]) for o in observations] == [
        ("120 / 80", ["120", "80"]),
        ("130 / 85", []),
        ("130", []),
        ("85", []),
    ]


def test_the_migration_links_the_components_imported_before_the_column_and_only_those(front_desk: User) -> None:
    patient, other = PatientFactory(), PatientFactory()
    legacy = [
        _row(patient, "bp1", "120 / 80"),
        _row(patient, "bp1-s", "120", "8480-6"),
        _row(patient, "bp1-d", "80", "8462-4"),
        _row(patient, "hr", "72", "8867-4"),
        # Parts that do not match (a value changed since): left as rows of their own.
        _row(patient, "bp2", "110 / 70", effective_at=AT - datetime.timedelta(hours=1)),
        _row(patient, "bp2-s", "111", "8480-6", effective_at=AT - datetime.timedelta(hours=1)),
        _row(patient, "bp2-d", "70", "8462-4", effective_at=AT - datetime.timedelta(hours=1)),
        _row(other, "bp3", "140 / 90"),
        _row(other, "bp3-s", "140", "8480-6"),
        _row(other, "bp3-d", "90", "8462-4"),
    ]
    imported_entries_create(actor=front_desk, entries=legacy)
    typed = [_typed_here(patient, value) for value in ("130 / 85", "130", "85")]
    assert not Observation.objects.filter(panel__isnull=False).exists()  # as before the column

    migration = importlib.import_module("records.migrations.0012_observation_panel_links")
    migration.link_components(django_apps, SimpleNamespace(connection=connection))

    links = dict(Observation.objects.filter(panel__isnull=False).values_list("source_id", "panel__source_id"))
    assert links == {"bp1-s": "bp1", "bp1-d": "bp1", "bp3-s": "bp3", "bp3-d": "bp3"}
    assert not Observation.objects.filter(pk__in=[o.pk for o in typed], panel__isnull=False).exists()
    migration.link_components(django_apps, SimpleNamespace(connection=connection))  # a second run changes nothing
    assert dict(Observation.objects.filter(panel__isnull=False).values_list("source_id", "panel__source_id")) == links


def test_a_component_linked_by_hand_to_another_patients_panel_never_shows_in_that_patients_record(
    front_desk: User,
) -> None:
    # The attacker has a database login: they point one patient's row to another patient's panel,
    # hoping the victim's value is read out with the other record (the link is plaintext, the values
    # are bound to their own rows).
    mine, theirs = PatientFactory(), PatientFactory()
    panel = _row(mine, "bp", "120 / 80")
    imported_entries_create(actor=front_desk, entries=[panel, _row(mine, "s", "120", "8480-6", panel=panel)])
    (victim,) = imported_entries_create(actor=front_desk, entries=[_row(theirs, "secret", "188", "8480-6")])
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE records_observation SET panel_id = %s WHERE id = %s", [panel.pk, victim.pk])
    except DatabaseError:
        pass  # refused outright: nothing to read

    mine_read = _read(Patient.objects.get(pk=mine.pk)).observations
    assert [(o.value, [c.value for c in o.components]) for o in mine_read] == [("120 / 80", ["120"])]
    page = _page(mine, Page(0, 10))
    assert [(o.value, [c.value for c in o.components]) for o in page.observations] == [("120 / 80", ["120"])]
    assert page.total == 1


def _sql(statement: str, params: list[object]) -> bool:
    """Run ``statement`` as the application's own database role, without its marker; False if refused."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement, params)
    except DatabaseError:
        return False
    return True


@pytest.mark.parametrize("shape", ["self-loop", "cycle", "two levels"])
def test_links_forged_in_sql_hide_no_row_from_the_export_or_a_page(front_desk: User, shape: str) -> None:
    # No link this application writes has these shapes; one set straight in the database must not make
    # a result vanish from what is sent to another provider (nor crash the read).
    patient = PatientFactory()
    p1, p2 = _row(patient, "p1", "120 / 80"), _row(patient, "p2", "130 / 85")
    imported_entries_create(
        actor=front_desk,
        entries=[
            p1,
            _row(patient, "c1", "120", "8480-6", panel=p1),
            p2,
            _row(patient, "c2", "130", "8480-6", panel=p2),
        ],
    )
    if shape == "self-loop":
        _sql("UPDATE records_observation SET panel_id = id WHERE id = %s", [p1.pk])
    elif shape == "cycle":
        _sql("UPDATE records_observation SET panel_id = %s WHERE id = %s", [p2.pk, p1.pk])
        _sql("UPDATE records_observation SET panel_id = %s WHERE id = %s", [p1.pk, p2.pk])
    else:  # p1 (with its component) made a component of p2
        _sql("UPDATE records_observation SET panel_id = %s WHERE id = %s", [p2.pk, p1.pk])

    whole = _read(Patient.objects.get(pk=patient.pk)).observations
    shown = sorted([o.value for o in whole] + [c.value for o in whole for c in o.components])
    assert shown == sorted(["120 / 80", "120", "130 / 85", "130"])
    for count in (1, 2, 10):
        values: list[str] = []
        offset, total = 0, None
        while total is None or offset < total:
            page = _page(patient, Page(offset, count))
            total = page.total
            values += [o.value for o in page.observations] + [c.value for o in page.observations for c in o.components]
            offset += count
        assert total == len(whole)
        assert sorted(values) == shown


def test_the_migration_leaves_a_value_that_does_not_decrypt_unlinked_and_goes_on(
    front_desk: User, caplog: pytest.LogCaptureFixture
) -> None:
    # A database login copied another row's token onto one part (encryption is bound to the row, so
    # it no longer decrypts): the deploy goes on, the other rows are linked, the operator is told.
    patient, other = PatientFactory(), PatientFactory()
    imported_entries_create(
        actor=front_desk,
        entries=[
            _row(patient, "p1", "120 / 80"),
            _row(patient, "p1s", "120", "8480-6"),
            _row(patient, "p1d", "80", "8462-4"),
        ],
    )
    imported_entries_create(
        actor=front_desk,
        entries=[
            _row(patient, "p2", "130 / 85", effective_at=AT - datetime.timedelta(hours=2)),
            _row(patient, "p2s", "130", "8480-6", effective_at=AT - datetime.timedelta(hours=2)),
            _row(patient, "p2d", "85", "8462-4", effective_at=AT - datetime.timedelta(hours=2)),
        ],
    )
    imported_entries_create(actor=front_desk, entries=[_row(other, "o", "999")])
    assert _sql(
        "UPDATE records_observation SET value = (SELECT value FROM records_observation WHERE source_id = 'o') "
        "WHERE source_id = 'p1d'",
        [],
    )
    migration = importlib.import_module("records.migrations.0012_observation_panel_links")

    migration.link_components(django_apps, SimpleNamespace(connection=connection))

    links = dict(Observation.objects.filter(panel__isnull=False).values_list("source_id", "panel__source_id"))
    assert links == {"p2s": "p2", "p2d": "p2"}
    unreadable = Observation.objects.get(source_id="p1d").pk
    assert f"1 imported observations did not decrypt and were left unlinked (ids {unreadable})" in caplog.text
    assert "999" not in caplog.text
