"""records/services/imports.py: the import write path refuses what it must, and names the importer."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import User
from audit.models import ChangeEvent
from records.crypto import source_index
from records.models import ClinicalNote, Condition, Encounter, Observation, Patient
from records.services import (
    DuplicatePatient,
    RecordNotFound,
    imported_entries_create,
    imported_entry_create,
    imported_patient_create,
    imports,
)

pytestmark = pytest.mark.django_db

BORN = datetime.date(1980, 1, 1)


def _patient(actor: User, **changes: object) -> Patient:
    fields: dict[str, object] = {
        "source_id": source_index("Patient", "a"),
        "mrn": "IMP-1",
        "given_name": "Ada",
        "family_name": "Byron",
        "birth_date": BORN,
        "sex": "female",
    }
    fields.update(changes)
    return imported_patient_create(actor=actor, **fields)  # type: ignore[arg-type]


def test_a_role_without_import_records_is_refused(physician: User) -> None:
    with pytest.raises(PermissionDenied):
        _patient(physician)
    assert not Patient.objects.exists()


def test_import_refuses_unknown_fields_a_missing_source_and_a_second_mrn(front_desk: User) -> None:
    with pytest.raises(TypeError):
        _patient(front_desk, shoe_size="9")
    with pytest.raises(ValidationError):
        _patient(front_desk, source_id="")
    _patient(front_desk, city="Leominster")
    with pytest.raises(DuplicatePatient):
        _patient(front_desk, source_id=source_index("Patient", "b"))
    assert Patient.objects.count() == 1


def test_imported_rows_need_a_source_and_an_imported_kind(front_desk: User) -> None:
    patient = _patient(front_desk)
    now = timezone.now()
    with pytest.raises(ValidationError):
        imported_entry_create(actor=front_desk, entry=Condition(patient=patient, display="x", recorded_at=now))
    note = ClinicalNote(patient=patient, kind="progress", author=front_desk, text="x", signed_at=now)
    with pytest.raises(TypeError):
        imported_entry_create(actor=front_desk, entry=note)  # type: ignore[type-var]
    condition = imported_entry_create(
        actor=front_desk,
        entry=Condition(patient=patient, code="44054006", display="Diabetes", recorded_at=now, source_id="s"),
    )
    event = ChangeEvent.objects.get(object_id=condition.pk, category="conditions")
    assert (event.action, event.actor_id) == ("import", front_desk.pk)
    assert "Diabetes" not in repr(event.__dict__)


def test_a_row_cannot_be_filed_under_another_patients_encounter(front_desk: User) -> None:
    mine = _patient(front_desk)
    other = _patient(front_desk, source_id=source_index("Patient", "b"), mrn="IMP-2", family_name="Other")
    theirs = imported_entry_create(
        actor=front_desk,
        entry=Encounter(patient=other, kind="ambulatory", starts_at=timezone.now(), source_id="e"),
    )
    with pytest.raises(ValidationError):
        imported_entry_create(
            actor=front_desk,
            entry=Condition(patient=mine, encounter=theirs, display="x", recorded_at=timezone.now(), source_id="c"),
        )
    assert not Condition.objects.exists()


def _conditions(patient: Patient, n: int, *, first: int = 0) -> list[Condition]:
    now = timezone.now()
    return [
        Condition(patient=patient, code="44054006", display="Diabetes", recorded_at=now, source_id=f"c{first + i}")
        for i in range(first, first + n)
    ]


def test_a_batch_is_written_in_the_same_number_of_queries_for_2_and_40_rows_with_an_event_each(
    front_desk: User,
) -> None:
    patient = _patient(front_desk)
    encounter = imported_entry_create(
        actor=front_desk, entry=Encounter(patient=patient, kind="ambulatory", starts_at=timezone.now(), source_id="e")
    )
    with CaptureQueriesContext(connection) as few:
        imported_entries_create(actor=front_desk, entries=_conditions(patient, 2))
    many_rows = _conditions(patient, 40, first=2)
    for row in many_rows:
        row.encounter = encounter
    with CaptureQueriesContext(connection) as many:
        saved = imported_entries_create(actor=front_desk, entries=many_rows)
    # One more for the encounters' owner check; not one per row.
    assert len(many) <= len(few) + 1, "\n".join(q["sql"] for q in many.captured_queries)
    assert all(row.pk for row in saved)
    events = ChangeEvent.objects.filter(category="conditions", action="import", actor_id=front_desk.pk)
    assert sorted(events.values_list("object_id", flat=True)) == sorted(Condition.objects.values_list("pk", flat=True))
    assert Condition.objects.filter(encounter=encounter).count() == 40


def test_a_batch_with_one_bad_row_writes_none_of_it(front_desk: User) -> None:
    mine = _patient(front_desk)
    other = _patient(front_desk, source_id=source_index("Patient", "b"), mrn="IMP-2", family_name="Other")
    theirs = imported_entry_create(
        actor=front_desk, entry=Encounter(patient=other, kind="ambulatory", starts_at=timezone.now(), source_id="e")
    )
    rows = _conditions(mine, 5)
    rows[3].encounter = theirs  # the attack: a result filed under another patient's stay
    with pytest.raises(ValidationError):
        imported_entries_create(actor=front_desk, entries=rows)
    rows = _conditions(mine, 5)
    rows[2].display = ""  # required
    with pytest.raises(ValidationError):
        imported_entries_create(actor=front_desk, entries=rows)
    rows = _conditions(mine, 3)
    rows[1].patient_id = 987654  # no such patient
    with pytest.raises(RecordNotFound):
        imported_entries_create(actor=front_desk, entries=rows)
    # Kinds come together; the second one's refusal undoes the first one's rows too.
    with pytest.raises(ValidationError):
        imported_entries_create(
            actor=front_desk,
            entries=[*_conditions(mine, 1), Encounter(patient=mine, kind="ambulatory", starts_at=timezone.now())],
        )
    assert not Condition.objects.exists()
    assert not ChangeEvent.objects.filter(category="conditions").exists()


def test_a_row_the_database_refuses_undoes_the_whole_batch(front_desk: User) -> None:
    patient = _patient(front_desk)
    start = timezone.now()
    good = Encounter(patient=patient, kind="ambulatory", starts_at=start, source_id="e1")
    backwards = Encounter(
        patient=patient, kind="ambulatory", starts_at=start, ends_at=start - datetime.timedelta(hours=1), source_id="e2"
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        imported_entries_create(actor=front_desk, entries=[good, backwards])
    assert not Encounter.objects.exists()
    assert not ChangeEvent.objects.filter(category="encounters").exists()


def _observation(patient: Patient, encounter: Encounter | None, source_id: str) -> Observation:
    return Observation(
        patient=patient,
        encounter=encounter,
        category="vital-signs",
        loinc_code="8302-2",
        display="Body height",
        value="180",
        unit="cm",
        effective_at=timezone.now(),
        source_id=source_id,
    )


def test_rows_of_several_kinds_are_written_kind_by_kind_with_the_checks_asked_once(front_desk: User) -> None:
    patient = _patient(front_desk)
    encounter = imported_entry_create(
        actor=front_desk, entry=Encounter(patient=patient, kind="ambulatory", starts_at=timezone.now(), source_id="e")
    )
    with CaptureQueriesContext(connection) as one_kind:
        imported_entries_create(actor=front_desk, entries=_conditions(patient, 3))
    conditions = _conditions(patient, 3, first=3)
    observations = [_observation(patient, encounter, f"o{number}") for number in range(3)]
    with CaptureQueriesContext(connection) as two_kinds:
        saved = imported_entries_create(actor=front_desk, entries=[*conditions, *observations])

    # The second kind costs its INSERT and its change events' INSERT (and the encounters' check), no more.
    assert len(two_kinds) <= len(one_kind) + 3, "\n".join(q["sql"] for q in two_kinds.captured_queries)
    assert [type(row) for row in saved] == [Condition] * 3 + [Observation] * 3
    assert all(row.pk for row in saved)
    assert ChangeEvent.objects.filter(category="observations", action="import").count() == 3
    assert ChangeEvent.objects.filter(category="conditions", action="import").count() == 6


def test_a_refusal_of_a_later_kind_leaves_the_rows_of_that_kind_without_keys(front_desk: User) -> None:
    # What the importer relies on to name the entry refused: the kinds before it were saved, it was not.
    mine = _patient(front_desk)
    other = _patient(front_desk, source_id=source_index("Patient", "b"), mrn="IMP-2", family_name="Other")
    theirs = imported_entry_create(
        actor=front_desk, entry=Encounter(patient=other, kind="ambulatory", starts_at=timezone.now(), source_id="e")
    )
    conditions = _conditions(mine, 2)
    observation = _observation(mine, theirs, "o")
    with pytest.raises(ValidationError):
        imported_entries_create(actor=front_desk, entries=[*conditions, observation])
    assert all(row.pk for row in conditions)
    assert observation.pk is None
    assert not Condition.objects.exists()


def test_the_change_events_of_several_kinds_are_one_write_each_naming_its_kind(
    front_desk: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audit import chain
    from healthcrypt import bulk

    patient = _patient(front_desk)
    encounter = imported_entry_create(
        actor=front_desk, entry=Encounter(patient=patient, kind="ambulatory", starts_at=timezone.now(), source_id="e")
    )
    rows: list[Any] = [*_conditions(patient, 2), *[_observation(patient, encounter, f"o{n}") for n in range(3)]]
    copies: list[str] = []

    def copy_rows(model: Any, values: Any, **kwargs: Any) -> list[int]:
        copies.append(model._meta.db_table)
        return bulk.copy_rows(model, values, **kwargs)

    # On PostgreSQL the events are a COPY (which Django's query capture does not see), elsewhere an INSERT.
    monkeypatch.setattr(chain, "copy_rows", copy_rows)
    with CaptureQueriesContext(connection) as queries:
        saved = imported_entries_create(actor=front_desk, entries=rows)

    inserts = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('INSERT INTO "audit_changeevent"')]
    assert len(inserts) + copies.count("audit_changeevent") == 1
    events = ChangeEvent.objects.filter(action="import", object_type__in=["Condition", "Observation"]).order_by("pk")
    assert [(e.object_type, e.category, e.object_id, e.patient_id, e.actor_id) for e in events] == [
        (
            type(row).__name__,
            "conditions" if type(row) is Condition else "observations",
            row.pk,
            patient.pk,
            front_desk.pk,
        )
        for row in saved
    ]
    assert {tuple(e.fields) for e in events if e.object_type == "Condition"} == {
        tuple(sorted(imports._event_fields(Condition)))
    }
    assert {tuple(e.fields) for e in events if e.object_type == "Observation"} == {
        tuple(sorted(imports._event_fields(Observation)))
    }


def test_rows_whose_change_events_cannot_be_written_are_not_kept(
    front_desk: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audit import services as audit_services

    patient = _patient(front_desk)
    encounter = imported_entry_create(
        actor=front_desk, entry=Encounter(patient=patient, kind="ambulatory", starts_at=timezone.now(), source_id="e")
    )

    def unavailable(rows: object) -> None:
        raise RuntimeError("audit store unavailable")

    monkeypatch.setattr(audit_services, "insert_unsealed", unavailable)
    monkeypatch.setattr(audit_services, "insert_unsealed_batches", lambda *args, **kwargs: unavailable(()))
    rows: list[Any] = [*_conditions(patient, 2), _observation(patient, encounter, "o")]
    with pytest.raises(RuntimeError), transaction.atomic():
        imported_entries_create(actor=front_desk, entries=rows)
    assert not Condition.objects.exists()
    assert not Observation.objects.exists()


def test_rows_may_point_to_an_encounter_written_first_in_the_same_call(front_desk: User) -> None:
    patient = _patient(front_desk)
    first = Encounter(patient=patient, kind="ambulatory", starts_at=timezone.now(), source_id="e1")
    second = Encounter(patient=patient, kind="ambulatory", starts_at=timezone.now(), source_id="e2")
    rows: list[Any] = [_observation(patient, first, "o1"), _observation(patient, second, "o2")]
    rows.append(Condition(patient=patient, encounter=second, display="x", recorded_at=timezone.now(), source_id="c"))
    with CaptureQueriesContext(connection) as queries:
        imported_entries_create(actor=front_desk, entries=[first, second, *rows])

    assert [Observation.objects.get(source_id=s).encounter_id for s in ("o1", "o2")] == [first.pk, second.pk]
    assert Condition.objects.get().encounter_id == second.pk
    # No query to ask who owns the new encounters: they were checked in memory.
    assert not [q for q in queries.captured_queries if 'FROM "records_encounter"' in q["sql"]]
    assert ChangeEvent.objects.filter(action="import", object_type="Observation").count() == 2


@pytest.mark.parametrize("attack", ["another patient's encounter", "an encounter not in the call", "encounters last"])
def test_a_row_pointing_to_an_unsaved_encounter_it_may_not_use_writes_nothing(front_desk: User, attack: str) -> None:
    mine = _patient(front_desk)
    other = _patient(front_desk, source_id=source_index("Patient", "b"), mrn="IMP-2", family_name="Other")
    encounter = Encounter(
        patient=other if attack == "another patient's encounter" else mine,
        kind="ambulatory",
        starts_at=timezone.now(),
        source_id="e",
    )
    row = _observation(mine, encounter, "o")
    entries: list[Any] = {  # type: ignore[assignment]
        "another patient's encounter": [encounter, row],
        "an encounter not in the call": [row],
        "encounters last": [row, encounter],
    }[attack]
    with pytest.raises(ValidationError) as refused:
        imported_entries_create(actor=front_desk, entries=entries)
    assert "encounter" in refused.value.error_dict
    assert not Observation.objects.exists()
    assert not Encounter.objects.exists()
    assert not ChangeEvent.objects.filter(object_type__in=["Observation", "Encounter"]).exists()


def test_a_bundle_is_written_in_one_call_of_the_service(front_desk: User, monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    from django.conf import settings

    from exchange.fhir import importer

    samples = Path(settings.BASE_DIR).parent / "shared" / "data" / "fhir" / "synthea-r4"
    if not samples.is_dir() or not Path(settings.FHIR_SCHEMA_PATH).is_file():
        pytest.skip("the shared FHIR samples and R4 schema (../shared/data) are absent")
    bundle = min(
        (p for p in samples.glob("*.json") if not p.name.startswith(importer.SHARED_PREFIXES)),
        key=lambda p: p.stat().st_size,
    )
    real = importer.imported_entries_create  # type: ignore[attr-defined]
    calls: list[int] = []

    def counted(*, actor: Any, entries: list[Any]) -> Any:
        calls.append(len(entries))
        return real(actor=actor, entries=entries)

    monkeypatch.setattr(importer, "imported_entries_create", counted)
    summary = importer.import_paths([bundle], actor=front_desk, progress=False)

    assert not summary.failed
    assert len(calls) == 1
    encounters = set(Encounter.objects.values_list("pk", flat=True))
    assert encounters
    assert set(Observation.objects.exclude(encounter=None).values_list("encounter_id", flat=True)) <= encounters
    assert not Observation.objects.exclude(encounter=None).exclude(encounter__patient_id=F("patient_id")).exists()


def test_components_are_written_after_their_panel_and_point_to_it(front_desk: User) -> None:
    patient = _patient(front_desk)
    panel = _observation(patient, None, "bp")
    parts = [_observation(patient, None, f"bp-{i}") for i in range(2)]
    for part in parts:
        part.panel = panel
    single = _observation(patient, None, "hr")

    imported_entries_create(actor=front_desk, entries=[panel, *parts, single])

    assert [part.panel_id for part in parts] == [panel.pk, panel.pk]
    assert (single.panel_id, panel.panel_id) == (None, None)
    assert max(panel.pk, single.pk) < min(part.pk for part in parts)  # the components' INSERT came second
    assert list(Observation.objects.get(pk=panel.pk).components.order_by("pk")) == parts
    assert ChangeEvent.objects.filter(action="import", object_type="Observation").count() == 4


@pytest.mark.parametrize(
    "attack", ["another patient's panel", "a panel not in the call", "a panel by its key", "a component's component"]
)
def test_a_component_whose_panel_it_may_not_use_writes_nothing(front_desk: User, attack: str) -> None:
    mine = _patient(front_desk)
    other = _patient(front_desk, source_id=source_index("Patient", "b"), mrn="IMP-2", family_name="Other")
    if attack == "a panel by its key":
        # A key set by hand could name any row: another patient's, already written.
        (theirs,) = imported_entries_create(actor=front_desk, entries=[_observation(other, None, "theirs")])
    panel = _observation(other if attack == "another patient's panel" else mine, None, "bp")
    part = _observation(mine, None, "bp-0")
    entries: list[Any] = [panel, part]
    if attack == "a panel not in the call":
        entries = [part]
        part.panel = panel
    elif attack == "a panel by its key":
        part.panel_id = theirs.pk
    elif attack == "a component's component":
        middle = _observation(mine, None, "bp-m")
        middle.panel = panel
        part.panel = middle
        entries = [panel, middle, part]
    else:
        part.panel = panel
    written = Observation.objects.count()

    with pytest.raises(ValidationError) as refused:
        imported_entries_create(actor=front_desk, entries=entries)

    assert "panel" in refused.value.error_dict
    assert Observation.objects.count() == written
    assert not ChangeEvent.objects.filter(object_type="Observation", patient_id=mine.pk).exists()


@pytest.mark.parametrize(("panels", "parts"), [(1, 1), (1, 2), (2, 1), (3, 3)])
def test_components_get_keys_after_their_panels_however_few(front_desk: User, panels: int, parts: int) -> None:
    # On PostgreSQL the kind's keys are drawn once, for all its rows; a half too small to be copied
    # (one panel) is inserted with the keys drawn for it, not new ones after its components'.
    patient = _patient(front_desk)
    rows: list[Observation] = []
    heads = []
    for i in range(panels):
        head = _observation(patient, None, f"p{i}")
        heads.append(head)
        rows.append(head)
        for j in range(parts):
            part = _observation(patient, None, f"p{i}-{j}")
            part.panel = head
            rows.append(part)

    imported_entries_create(actor=front_desk, entries=rows)

    components = [row for row in rows if row.panel_id is not None]
    assert len(components) == panels * parts
    assert max(head.pk for head in heads) < min(part.pk for part in components)
    stored = dict(Observation.objects.filter(source_id__in=[r.source_id for r in rows]).values_list("source_id", "pk"))
    assert stored == {row.source_id: row.pk for row in rows}
