"""FHIR import with the next file validated ahead in a second process (exchange/fhir/importer.py,
issue 12): that process never uses the database, the conditional references it took on trust are
checked after the bundle before commits, every problem and error comes out as when each file was
validated in turn, and the import goes on if the process dies."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
from pathlib import Path
from typing import Any

import pytest
from django.db.backends.base.base import BaseDatabaseWrapper

from accounts.models import User
from exchange.fhir import importer, validate
from exchange.fhir.importer import import_paths
from exchange.fhir.validate import BundleInvalid, Problem, ValidBundle
from exchange.models import DirectoryEntry
from records.models import Patient
from tests.exchange.fhir.test_fhir_import import SMALL, _conditional_layout, _load, _write, pytestmark  # noqa: F401


def _spy_validations(monkeypatch: pytest.MonkeyPatch, log: Path) -> None:
    """Record (file name, validated in this process?) for each read_valid_bundle the importer calls, in
    ``log`` (the second process is a fork: what it appended to a list would stay there); :func:`_calls`
    reads them back, sorted (the next file may start there before this one starts here)."""
    parent = os.getpid()
    real = validate.read_valid_bundle

    def spy(path: Path, *, known: Any) -> ValidBundle:
        with log.open("a") as handle:
            handle.write(f"{path.name}\t{int(os.getpid() == parent)}\n")
        return real(path, known=known)

    monkeypatch.setattr(importer, "read_valid_bundle", spy)


def _calls(log: Path) -> list[tuple[str, bool]]:
    if not log.exists():
        return []
    return sorted((name, here == "1") for name, here in (line.split("\t") for line in log.read_text().splitlines()))


def _validating_processes() -> list[Any]:
    return multiprocessing.active_children()


def test_a_patient_bundle_validated_ahead_finds_the_shared_bundle_committed_before_it(
    front_desk: User, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, patient_file = _conditional_layout(tmp_path, SMALL)
    log = tmp_path / "validations.log"
    _spy_validations(monkeypatch, log)

    summary = import_paths([folder], actor=front_desk, progress=False)

    assert not summary.failed, summary.failed[0].problems[:3] if summary.failed else None
    assert Patient.objects.count() == 1
    assert DirectoryEntry.objects.exists()
    # The shared bundle in this process (nothing to overlap yet), the patient bundle ahead, once: its
    # conditional targets, taken on trust there, were all found after the shared bundle committed.
    assert _calls(log) == [("hospitalInformation1.json", True), (patient_file.name, False)]
    assert not _validating_processes()


@pytest.mark.parametrize("also_a_broken_reference", [False, True], ids=["else valid", "else invalid"])
def test_a_conditional_reference_to_nothing_known_is_refused_the_same_when_validated_ahead(
    front_desk: User, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, also_a_broken_reference: bool
) -> None:
    folder, patient_file = _conditional_layout(tmp_path, SMALL)
    # The shared bundle brings the organisations but not the practitioners the patient bundle names.
    shared = folder / "hospitalInformation1.json"
    bundle = _load(shared)
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Organization"]
    _write(folder, shared.name, bundle)
    if also_a_broken_reference:
        # Refused ahead for this alone (the conditional references taken on trust there).
        patient = _load(patient_file)
        first = next(e for e in patient["entry"] if e["resource"]["resourceType"] == "Encounter")
        first["resource"]["subject"]["reference"] = "urn:uuid:00000000-0000-0000-0000-000000000000"
        patient_file.write_text(json.dumps(patient))
    log = tmp_path / "validations.log"
    _spy_validations(monkeypatch, log)

    summary = import_paths([folder], actor=front_desk, progress=False)

    assert [result.path.name for result in summary.failed] == [patient_file.name]
    problems = summary.failed[0].problems
    assert any(p.message == "is a conditional reference that matches nothing imported" for p in problems)
    assert any("points to no entry" in p.message for p in problems) is also_a_broken_reference
    # A target not found: validated again here with known_target, so the problems are exactly those of
    # a validation in this process against the directory as it is (the refused bundle wrote nothing).
    assert _calls(log) == [("hospitalInformation1.json", True), (patient_file.name, False), (patient_file.name, True)]
    with pytest.raises(BundleInvalid) as in_turn:
        validate.read_valid_bundle(patient_file, known=importer.known_target)
    assert problems == in_turn.value.problems
    assert Patient.objects.count() == 0


def test_files_validated_ahead_are_validated_without_touching_the_database(
    front_desk: User, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The second process is a fork: the connection it inherited is this process's (in the middle of
    # the test's transaction), and a connection of its own would not see the bundle being written.
    folder, _ = _conditional_layout(tmp_path, SMALL)
    _write(folder, "second.json", _load(SMALL))
    log = tmp_path / "validations.log"
    _spy_validations(monkeypatch, log)
    used = tmp_path / "database-used-by.log"
    for name in ("cursor", "ensure_connection"):
        real = getattr(BaseDatabaseWrapper, name)

        def recording(self: BaseDatabaseWrapper, *args: Any, _real: Any = real, **kwargs: Any) -> Any:
            with used.open("a") as handle:
                handle.write(f"{os.getpid()}\n")
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(BaseDatabaseWrapper, name, recording)

    summary = import_paths([folder], actor=front_desk, progress=False)

    assert not summary.failed
    assert _calls(log) == [("hospitalInformation1.json", True), ("patient.json", False), ("second.json", False)]
    assert set(used.read_text().split()) == {str(os.getpid())}


@pytest.mark.parametrize("invalid_first", [True, False], ids=["invalid first", "invalid ahead"])
def test_invalid_json_in_one_file_is_reported_and_the_other_file_imported(
    front_desk: User, tmp_path: Path, invalid_first: bool
) -> None:
    good = _write(tmp_path, "good.json", _load(SMALL))
    bad = tmp_path / "bad.json"
    bad.write_text(SMALL.read_text()[:-20])
    files = [bad, good] if invalid_first else [good, bad]

    summary = import_paths(files, actor=front_desk, progress=False)

    assert [result.path for result in summary.files] == files
    assert [result.path for result in summary.failed] == [bad]
    assert [p.message.split(" at line")[0] for p in summary.failed[0].problems] == ["invalid JSON"]
    assert Patient.objects.count() == 1


def test_an_unexpected_error_validating_ahead_is_raised_after_the_file_before_is_written(
    front_desk: User, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = _write(tmp_path, "broken.json", _load(SMALL))
    real = validate.read_valid_bundle

    def failing(path: Path, *, known: Any) -> ValidBundle:
        if path == broken:
            raise RuntimeError("not a refusal")
        return real(path, known=known)

    monkeypatch.setattr(importer, "read_valid_bundle", failing)
    with pytest.raises(RuntimeError, match="not a refusal"):
        import_paths([SMALL, broken], actor=front_desk, progress=False)
    assert Patient.objects.count() == 1
    assert not _validating_processes()


def test_an_error_writing_a_bundle_cancels_the_validation_ahead(
    front_desk: User, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = [_write(tmp_path, f"{n}.json", _load(SMALL)) for n in range(3)]
    log = tmp_path / "validations.log"
    _spy_validations(monkeypatch, log)

    def failing(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database gone")

    monkeypatch.setattr(importer, "import_bundle", failing)
    with pytest.raises(RuntimeError, match="database gone"):
        import_paths(files, actor=front_desk, progress=False)
    # The first file here, the second ahead (waited for or cancelled), never the third.
    assert [name for name, _ in _calls(log)] in (["0.json"], ["0.json", "1.json"])
    assert not _validating_processes()


def test_the_import_goes_on_in_this_process_when_the_process_validating_ahead_dies(
    front_desk: User, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Killed (out of memory on a big bundle, an operator's kill): the file it had is validated here.
    files = [_write(tmp_path, f"{n}.json", _load(SMALL)) for n in range(3)]
    parent = os.getpid()
    real = validate.read_valid_bundle

    def dying(path: Path, *, known: Any) -> ValidBundle:
        if os.getpid() != parent:
            os._exit(1)
        return real(path, known=known)

    monkeypatch.setattr(importer, "read_valid_bundle", dying)

    summary = import_paths(files, actor=front_desk, progress=False)

    assert not summary.failed
    assert [result.resources for result in summary.files] == [len(_load(SMALL)["entry"])] * 3
    assert Patient.objects.count() == 1  # the same patient three times: imported once, then present
    assert not _validating_processes()


def test_a_refusal_crosses_from_the_second_process_with_its_problems() -> None:
    problems = [Problem("entry[3].resource.subject.reference", "points to no entry of this bundle")]
    copied = pickle.loads(pickle.dumps(BundleInvalid(problems)))  # noqa: S301 (our own bytes)
    assert copied.problems == problems
    assert str(copied) == str(BundleInvalid(problems))
