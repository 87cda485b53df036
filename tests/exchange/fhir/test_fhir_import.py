"""FHIR R4 import (exchange/fhir/): every shared Synthea bundle, values, atomicity, re-import, both
layouts, and the inputs that must be refused with nothing written."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection

from accounts.models import User
from audit.models import ChangeEvent
from exchange.fhir import importer
from exchange.fhir.importer import import_paths
from exchange.fhir.mapping import DIRECTORY_TYPES, IMPORTED_TYPES
from exchange.models import DirectoryEntry
from records.models import Condition, Encounter, Immunization, Medication, Observation, Patient

DATA = Path(settings.BASE_DIR).parent / "shared" / "data"
SAMPLES = DATA / "fhir" / "synthea-r4"
pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        not SAMPLES.is_dir() or not Path(settings.FHIR_SCHEMA_PATH).is_file(),
        reason="the shared FHIR samples and R4 schema (../shared/data) are absent",
    ),
]

PATIENT_FILES = sorted(p for p in SAMPLES.glob("*.json") if not p.name.startswith(importer.SHARED_PREFIXES))
SMALL = min(PATIENT_FILES, key=lambda p: p.stat().st_size)


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _counts(paths: list[Path]) -> Counter[str]:
    total: Counter[str] = Counter()
    for path in paths:
        total += Counter(e["resource"]["resourceType"] for e in _load(path)["entry"])
    return total


def _patient_resource(bundle: dict[str, Any]) -> dict[str, Any]:
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")


@pytest.fixture
def importer_user(front_desk: User) -> User:
    return front_desk


def _write(tmp_path: Path, name: str, bundle: Any) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(bundle))
    return path


def test_every_shared_bundle_imports_with_the_per_type_counts_of_the_source(importer_user: User) -> None:
    summary = import_paths([SAMPLES], actor=importer_user, progress=False)

    assert not summary.failed, [(r.path.name, r.problems[:3]) for r in summary.failed]
    patients = _counts(PATIENT_FILES)
    for name, expected in patients.items():
        counts = summary.counts[name]
        if name in DIRECTORY_TYPES:
            # Each patient bundle repeats its practitioners and organisations; the shared ones came first.
            assert counts.imported + counts.present == expected + _counts(
                [p for p in SAMPLES.glob("*.json") if p.name.startswith(importer.SHARED_PREFIXES)]
            ).get(name, 0)
        elif name in IMPORTED_TYPES:
            assert (counts.imported, counts.present, counts.skipped) == (expected, 0, 0), name
        else:
            assert (counts.imported, counts.skipped) == (0, expected), name
    assert Patient.objects.count() == patients["Patient"]
    assert Encounter.objects.count() == patients["Encounter"]
    components = sum(
        len(e["resource"].get("component", []))
        for p in PATIENT_FILES
        for e in _load(p)["entry"]
        if e["resource"]["resourceType"] == "Observation"
    )
    assert Observation.objects.count() == patients["Observation"] + components
    # Every row is a change event naming the importer.
    events = ChangeEvent.objects.filter(action="import")
    assert events.exclude(actor_id=importer_user.pk).count() == 0
    assert events.count() >= patients["Patient"] + patients["Encounter"] + patients["Observation"]


def test_values_survive_encrypted_and_codes_are_kept(importer_user: User) -> None:
    bundle = _load(SMALL)
    summary = import_paths([SMALL], actor=importer_user, progress=False)
    assert not summary.failed

    source = _patient_resource(bundle)
    patient = Patient.objects.get()
    assert patient.family_name == source["name"][0]["family"]
    assert patient.given_name == " ".join(source["name"][0]["given"])
    assert patient.birth_date.isoformat() == source["birthDate"]
    resources = [e["resource"] for e in bundle["entry"]]
    vaccines = {i.code for i in Immunization.objects.all()}
    assert vaccines == {r["vaccineCode"]["coding"][0]["code"] for r in resources if r["resourceType"] == "Immunization"}
    conditions = {c.code for c in Condition.objects.all()}
    assert conditions == {r["code"]["coding"][0]["code"] for r in resources if r["resourceType"] == "Condition"}
    medications = {m.code for m in Medication.objects.all()}
    assert medications == {
        r["medicationCodeableConcept"]["coding"][0]["code"]
        for r in resources
        if r["resourceType"] == "MedicationRequest"
    }
    # A blood pressure: the panel and each component, with its LOINC code and value.
    stored = {(o.loinc_code, o.value, o.unit) for o in Observation.objects.all()}
    for r in resources:
        if r["resourceType"] == "Observation" and "component" in r:
            for c in r["component"]:
                q = c["valueQuantity"]
                assert (c["code"]["coding"][0]["code"], str(q["value"]), q["unit"]) in stored
        elif r["resourceType"] == "Observation" and "valueQuantity" in r:
            q = r["valueQuantity"]
            assert (r["code"]["coding"][0]["code"], str(q["value"]), q["unit"]) in stored
    # Each component's row points to its panel's, of the same patient; a panel is no component.
    panels = [r for r in resources if r["resourceType"] == "Observation" and "component" in r]
    assert panels
    components = Observation.objects.filter(panel__isnull=False).select_related("panel")
    assert components.count() == sum(len(r["component"]) for r in panels)
    for component in components:
        assert component.panel is not None
        assert (component.panel.patient_id, component.panel.panel_id) == (component.patient_id, None)
        assert component.value in component.panel.value.split(" / ")


def test_raw_sql_shows_no_plaintext_of_the_patients_name(importer_user: User) -> None:
    bundle = _load(SMALL)
    import_paths([SMALL], actor=importer_user, progress=False)
    family = _patient_resource(bundle)["name"][0]["family"]
    patient_id = _patient_resource(bundle)["id"]
    with connection.cursor() as cursor:
        for table in ("records_patient", "records_encounter", "records_observation", "audit_changeevent"):
            cursor.execute(f"SELECT * FROM {table}")  # noqa: S608 (fixed table names)
            text = repr(cursor.fetchall())
            assert family not in text, table
            assert patient_id not in text, table


def test_change_events_name_the_importer(importer_user: User) -> None:
    import_paths([SMALL], actor=importer_user, progress=False)
    events = ChangeEvent.objects.filter(action="import")
    assert events.count() >= Patient.objects.count() + Encounter.objects.count() + Observation.objects.count()
    assert set(events.values_list("actor_id", flat=True)) == {importer_user.pk}


def test_reimport_creates_no_duplicates(importer_user: User) -> None:
    files = PATIENT_FILES[:2]
    first = import_paths(files, actor=importer_user, progress=False)
    rows = (Patient.objects.count(), Observation.objects.count(), DirectoryEntry.objects.count())
    again = import_paths(files, actor=importer_user, progress=False)

    assert not first.failed
    assert not again.failed
    assert (Patient.objects.count(), Observation.objects.count(), DirectoryEntry.objects.count()) == rows
    source = _counts(files)
    assert again.counts["Observation"].present == source["Observation"]
    assert again.counts["Observation"].imported == 0
    assert again.counts["Patient"].present == 2


def test_an_error_midway_writes_nothing_of_that_bundle(importer_user: User, monkeypatch: pytest.MonkeyPatch) -> None:
    # One call writes the encounters, then every other kind (one INSERT per kind); it fails after
    # writing the encounters and the next kind, after the patient, in the bundle's transaction.
    real = importer.imported_entries_create
    calls = {"n": 0}

    def failing(*, actor: Any, entries: list[Any]) -> Any:
        calls["n"] += 1
        kinds = list(dict.fromkeys(type(row) for row in entries))
        assert kinds[0] is Encounter
        assert len(kinds) > 2
        real(actor=actor, entries=[row for row in entries if type(row) in kinds[:2]])
        assert Encounter.objects.exists()
        raise ValidationError({"value": "injected"})

    monkeypatch.setattr(importer, "imported_entries_create", failing)
    summary = import_paths([SMALL], actor=importer_user, progress=False)

    assert calls["n"] == 1
    assert len(summary.failed) == 1
    assert summary.failed[0].problems[0].path.startswith("entry[")
    assert Patient.objects.count() == 0
    assert Observation.objects.count() == 0
    assert Encounter.objects.count() == 0
    assert DirectoryEntry.objects.count() == 0
    assert not ChangeEvent.objects.filter(action="import").exists()
    assert summary.counts == {}


def _conditional_layout(tmp_path: Path, source: Path) -> tuple[Path, Path]:
    """Split a sample into Synthea's newer layout: Practitioner/Organization in a shared bundle, the
    patient bundle pointing to them by conditional reference."""
    bundle = _load(source)
    shared = [e for e in bundle["entry"] if e["resource"]["resourceType"] in DIRECTORY_TYPES]
    rewrite = {}
    for e in shared:
        identifier = e["resource"]["identifier"][0]
        rewrite[e["fullUrl"]] = (
            f"{e['resource']['resourceType']}?identifier={identifier['system']}|{identifier['value']}"
        )
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["resourceType"] not in DIRECTORY_TYPES]
    text = json.dumps(bundle)
    for old, new in rewrite.items():
        text = text.replace(json.dumps(old), json.dumps(new))
    folder = tmp_path / "newer"
    folder.mkdir()
    patient = folder / "patient.json"
    patient.write_text(text)
    _write(folder, "hospitalInformation1.json", {"resourceType": "Bundle", "type": "batch", "entry": shared})
    return folder, patient


def test_conditional_reference_layout_imports_the_shared_bundle_first(importer_user: User, tmp_path: Path) -> None:
    folder, patient_file = _conditional_layout(tmp_path, SMALL)
    assert "?identifier=" in patient_file.read_text()

    summary = import_paths([folder], actor=importer_user, progress=False)

    assert summary.files[0].path.name == "hospitalInformation1.json"
    assert not summary.failed, summary.failed[0].problems[:3] if summary.failed else None
    assert Patient.objects.count() == 1
    assert summary.counts["Observation"].imported == _counts([SMALL])["Observation"]


def test_a_conditional_reference_to_nothing_known_is_refused(importer_user: User, tmp_path: Path) -> None:
    _, patient_file = _conditional_layout(tmp_path, SMALL)
    summary = import_paths([patient_file], actor=importer_user, progress=False)
    assert len(summary.failed) == 1
    assert any("conditional reference" in p.message for p in summary.failed[0].problems)
    assert Patient.objects.count() == 0


def _broken(kind: str, tmp_path: Path) -> Path:
    bundle = _load(SMALL)
    patient = _patient_resource(bundle)
    if kind == "wrong resource type":
        patient["resourceType"] = "Patientt"
    elif kind == "broken reference":
        first = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Encounter")
        first["resource"]["subject"]["reference"] = "urn:uuid:00000000-0000-0000-0000-000000000000"
    elif kind == "malformed date":
        patient["birthDate"] = "31/12/1990"
    elif kind == "impossible date":
        patient["birthDate"] = "1990-02-31"
    elif kind == "not a bundle":
        bundle["resourceType"] = "Patient"
    if kind == "invalid JSON":
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(bundle)[:-20])
        return path
    if kind == "deep nesting":
        path = tmp_path / "deep.json"
        path.write_text('{"resourceType": "Bundle", "type": "batch", "entry": ' + "[" * 5000 + "]" * 5000 + "}")
        return path
    return _write(tmp_path, f"{kind.replace(' ', '_')}.json", bundle)


@pytest.mark.parametrize(
    ("kind", "where"),
    [
        ("wrong resource type", r"entry\[\d+\]\.resource\.resourceType"),
        ("broken reference", r"entry\[\d+\]\.resource\.subject\.reference"),
        ("malformed date", r"entry\[\d+\]\.resource\.birthDate"),
        ("impossible date", r"entry\[\d+\]\.resource\.birthDate"),
        ("not a bundle", r"resourceType"),
        ("invalid JSON", r""),
        ("deep nesting", r""),
    ],
)
def test_invalid_input_is_refused_with_its_path_and_nothing_written(
    importer_user: User, tmp_path: Path, kind: str, where: str
) -> None:
    path = _broken(kind, tmp_path)
    summary = import_paths([path], actor=importer_user, progress=False)

    assert len(summary.failed) == 1
    problems = summary.failed[0].problems
    assert any(re.fullmatch(where, p.path) for p in problems), problems
    assert Patient.objects.count() == 0
    assert DirectoryEntry.objects.count() == 0
    # The messages never quote the file's values.
    text = " ".join(str(p) for p in problems)
    source = _patient_resource(_load(SMALL))
    assert source["name"][0]["family"] not in text
    assert source["id"] not in text
    assert "1990" not in text


def test_an_oversized_file_is_refused_before_it_is_read(importer_user: User, settings: Any) -> None:
    settings.FHIR_MAX_BUNDLE_BYTES = 1000
    summary = import_paths([SMALL], actor=importer_user, progress=False)
    assert "over the limit" in summary.failed[0].problems[0].message
    assert Patient.objects.count() == 0


def test_command_refuses_an_actor_without_the_import_capability(physician: User) -> None:
    with pytest.raises(CommandError, match="import_records"):
        call_command("import_fhir", str(SMALL), "--actor", physician.username, "--no-progress")
    with pytest.raises(CommandError, match="import_records"):
        call_command("import_fhir", str(SMALL), "--actor", "nobody-such", "--no-progress")
    assert Patient.objects.count() == 0


def test_command_imports_and_exits_non_zero_when_a_file_fails(importer_user: User, tmp_path: Path) -> None:
    bad = _broken("broken reference", tmp_path)
    with pytest.raises(CommandError, match="1 bundle"):
        call_command("import_fhir", str(SMALL), str(bad), "--actor", importer_user.username, "--no-progress")
    assert Patient.objects.count() == 1


def _directory_count(bundle: dict[str, Any]) -> int:
    return sum(1 for e in bundle["entry"] if e["resource"]["resourceType"] in DIRECTORY_TYPES)


def test_directory_rows_are_written_together_each_with_its_change_history(importer_user: User) -> None:
    from auditlog.models import LogEntry

    def history() -> int:
        return LogEntry.objects.get_for_model(DirectoryEntry).filter(action=LogEntry.Action.CREATE).count()

    summary = import_paths([SMALL], actor=importer_user, progress=False)
    rows = DirectoryEntry.objects.count()

    assert not summary.failed
    assert rows == _directory_count(_load(SMALL))
    assert sum(summary.counts[name].imported for name in DIRECTORY_TYPES) == rows
    assert history() == rows
    again = import_paths([SMALL], actor=importer_user, progress=False)
    assert sum(again.counts[name].present for name in DIRECTORY_TYPES) == rows
    assert (DirectoryEntry.objects.count(), history()) == (rows, rows)


def test_a_practitioner_twice_in_one_bundle_is_one_row_imported_once(importer_user: User, tmp_path: Path) -> None:
    bundle = _load(SMALL)
    practitioner = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Practitioner")
    bundle["entry"].append({**practitioner, "fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000001"})

    summary = import_paths([_write(tmp_path, "twice.json", bundle)], actor=importer_user, progress=False)

    assert not summary.failed
    assert DirectoryEntry.objects.filter(kind="Practitioner").count() == summary.counts["Practitioner"].imported
    assert summary.counts["Practitioner"].present == 1


def test_a_directory_row_added_meanwhile_by_another_import_is_found_not_duplicated(
    importer_user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another import adds one of the bundle's practitioners after this one looked the directory up:
    # the INSERT of all of them fails on the unique source id, and they are found or added one by one.
    practitioner = next(e["resource"] for e in _load(SMALL)["entry"] if e["resource"]["resourceType"] == "Practitioner")
    DirectoryEntry.objects.create(kind="Practitioner", source_id=practitioner["id"])
    monkeypatch.setattr(importer, "_directory_known", lambda wanted: {})

    summary = import_paths([SMALL], actor=importer_user, progress=False)

    assert not summary.failed, summary.failed[0].problems[:3] if summary.failed else None
    assert DirectoryEntry.objects.count() == _directory_count(_load(SMALL))
    assert summary.counts["Practitioner"].present == 1
    assert Patient.objects.count() == 1


def _old_reference_problems(valid: Any, known: Any) -> list[tuple[str, str]]:
    """Step 6 as it was before the references came from the parsing walk: every reference of every
    entry's resource, walked with its path, each checked on its own."""
    from exchange.fhir import validate

    by_identifier: dict[tuple[str, str, str], Any] = {}
    for entry in valid.entries:
        for system, value in validate._identifiers(entry.resource):
            by_identifier.setdefault((entry.resource_type, system, value), entry)
        if entry.resource_id:
            valid.by_relative[f"{entry.resource_type}/{entry.resource_id}"] = entry
    found = []
    for entry in valid.entries:
        for path, reference in validate._references(entry.resource, [f"entry[{entry.index}]", "resource"]):
            problem = validate._resolve(valid, by_identifier, known, reference)
            if problem:
                found.append((validate._path(path), problem))
    return found


def test_one_walk_finds_the_same_reference_problems_in_the_same_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from exchange.fhir import validate

    bundle = _load(SMALL)
    encounters = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Encounter"]
    encounters[0]["resource"]["subject"]["reference"] = "urn:uuid:00000000-0000-0000-0000-000000000000"
    encounters[-1]["resource"]["subject"]["reference"] = "Organization?identifier=urn:x|nothing"
    encounters[-1]["resource"].setdefault("serviceProvider", {})["reference"] = "Patient/not-here"
    path = _write(tmp_path, "three.json", bundle)

    def problems() -> list[tuple[str, str]]:
        with pytest.raises(validate.BundleInvalid) as refused:
            validate.read_valid_bundle(path, known=lambda *target: False)
        return [(p.path, p.message) for p in refused.value.problems]

    now = problems()
    monkeypatch.setattr(
        validate,
        "_check_references",
        lambda valid, known, seen: [validate.Problem(*found) for found in _old_reference_problems(valid, known)],
    )
    assert now == problems()
    assert len(now) == 3
    assert [message.split()[0] for _, message in now] == ["points", "is", "cannot"]


def test_a_reference_outside_the_resources_is_not_checked_as_before(tmp_path: Path) -> None:
    from exchange.fhir import validate

    valid = validate.read_valid_bundle(SMALL, known=lambda *target: False)
    problems = validate._check_references(valid, lambda *target: False, ["urn:uuid:nowhere", "Patient/nothing"])
    assert problems == []
    assert _old_reference_problems(valid, lambda *target: False) == []


def test_conditional_references_resolve_the_same_from_the_parsing_walk(tmp_path: Path) -> None:
    from exchange.fhir.validate import read_bundle, read_valid_bundle, validate_bundle

    _, patient_file = _conditional_layout(tmp_path, SMALL)

    def known(*target: str) -> bool:
        return True

    once = read_valid_bundle(patient_file, known=known)
    twice = validate_bundle(read_bundle(patient_file), known=known)
    assert once.conditional
    assert once.conditional.keys() == twice.conditional.keys()
