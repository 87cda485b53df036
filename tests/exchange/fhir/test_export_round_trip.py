"""FHIR R4 export (exchange/fhir/export.py) against every shared Synthea sample: import -> export ->
compare per type and per value with the source -> import the export as a new patient -> export again,
and the two exports hold the same resources and values. Each export validates against the R4 schema."""

from __future__ import annotations

import copy
import datetime
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import transaction

from accounts.models import User
from exchange.fhir import importer
from exchange.fhir.export import bundle_for, export_patient
from exchange.fhir.importer import import_bundle, import_paths
from exchange.fhir.mapping import RECORD_TYPES, extract
from exchange.fhir.validate import ValidBundle, validate_bundle
from records.crypto import mrn_index
from records.models import Patient
from records.selectors.export import record_for_export
from tests.factories import assign

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


def _resources(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def _number_or_text(value: str) -> object:
    try:
        return float(value)
    except ValueError:
        return value


def _moment(value: object) -> object:
    """A date or date-time as a comparable instant (an export writes UTC offsets as +00:00)."""
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.UTC)
    return value


def _values(resource: dict[str, Any]) -> tuple[object, ...]:
    """What the importer keeps of a resource (mapping.extract), made comparable; ids and references left out."""
    extracted = extract(resource)
    fields = {
        name: _number_or_text(value) if name == "value" else _moment(value) for name, value in extracted.fields.items()
    }
    components = tuple(
        tuple(sorted({**c, "value": _number_or_text(c["value"])}.items(), key=lambda kv: kv[0]))
        for c in extracted.components
    )
    return (tuple(sorted(fields.items(), key=lambda kv: kv[0], reverse=False)), components, sorted(extracted.refs))


def _by_type(bundle: dict[str, Any], *, mrn: bool = True) -> dict[str, Counter[str]]:
    """Per resource type, how many resources hold each set of values (``mrn=False``: the MRN left out)."""
    found: dict[str, Counter[str]] = {}
    for kind in RECORD_TYPES:
        found[kind] = Counter()
        for resource in _resources(bundle, kind):
            values = _values(resource)
            if not mrn:
                values = (tuple(kv for kv in values[0] if kv[0] != "mrn"), *values[1:])
            found[kind][repr(values)] += 1
    return found


CODE_ELEMENTS = {
    "Encounter": "type.0",
    "Condition": "code",
    "Observation": "code",
    "DiagnosticReport": "code",
    "MedicationRequest": "medicationCodeableConcept",
    "Procedure": "code",
    "Immunization": "vaccineCode",
    "AllergyIntolerance": "code",
}


def _code_systems(bundle: dict[str, Any]) -> dict[str, Counter[tuple[str, str]]]:
    """Per type, the (system, code) pairs of each resource's main code: the systems must survive too."""
    found: dict[str, Counter[tuple[str, str]]] = {}
    for kind, element in CODE_ELEMENTS.items():
        found[kind] = Counter()
        for resource in _resources(bundle, kind):
            concept: Any = resource
            for part in element.split("."):
                concept = concept[int(part)] if part.isdigit() else concept.get(part, {})
            coding = (concept.get("coding") or [{}])[0]
            found[kind][(coding.get("system", ""), coding.get("code", ""))] += 1
    return found


def _valid(bundle: dict[str, Any]) -> ValidBundle:
    return validate_bundle(bundle, known=lambda *target: False)


def _import_all(front_desk: User) -> None:
    summary = import_paths([SAMPLES], actor=front_desk, progress=False)
    assert not summary.failed, [(r.path.name, r.problems[:3]) for r in summary.failed]


def _patient_of(source: dict[str, Any]) -> Patient:
    mrn = extract(_resources(source, "Patient")[0]).fields["mrn"]
    return Patient.objects.get(mrn_index=mrn_index(mrn))


def test_every_sample_round_trips_with_the_same_resources_and_values(physician: User, front_desk: User) -> None:
    _import_all(front_desk)
    for path in PATIENT_FILES:
        source = json.loads(path.read_text())
        patient = _patient_of(source)
        assign(physician, patient)
        exported = export_patient(
            actor=physician, patient_id=patient.pk, purpose="continuity_of_care", recipient="General Hospital"
        )
        _valid(exported)  # export_patient validated it already; the test does not take its word for it
        assert exported["type"] == "collection"
        source_values, export_values = _by_type(source), _by_type(exported)
        for kind in RECORD_TYPES:
            assert sum(export_values[kind].values()) == sum(source_values[kind].values()), (path.name[-12:], kind)
            assert export_values[kind] == source_values[kind], (path.name[-12:], kind)
        assert _code_systems(exported) == _code_systems(source), path.name[-12:]


def test_an_export_imported_as_a_new_patient_exports_the_same_again(physician: User, front_desk: User) -> None:
    source_path = min(PATIENT_FILES, key=lambda p: p.stat().st_size)
    import_paths([SAMPLES / "hospitalInformation1559319163815.json", source_path], actor=front_desk, progress=False)
    patient = _patient_of(json.loads(source_path.read_text()))
    assign(physician, patient)
    first = export_patient(actor=physician, patient_id=patient.pk, purpose="patient_request", recipient="The patient")
    assert sum(len(_resources(first, k)) for k in RECORD_TYPES) == len(first["entry"])
    patients = Patient.objects.count()

    # Back into the hospital it came from: the medical record number is taken, nothing is written.
    with pytest.raises(importer.ImportFailed, match="already registered"), transaction.atomic():
        import_bundle(_valid(first), actor=front_desk)
    assert Patient.objects.count() == patients

    # The same record arriving as another patient (a new MRN): every resource is new, and its export
    # holds the same resources and values as the first.
    renamed = copy.deepcopy(first)
    _resources(renamed, "Patient")[0]["identifier"][0]["value"] = "RT0000001"
    counts = import_bundle(_valid(renamed), actor=front_desk)
    assert {kind: (c.present, c.skipped) for kind, c in counts.items()} == dict.fromkeys(counts, (0, 0))
    copy_patient = Patient.objects.get(mrn_index=mrn_index("RT0000001"))
    assign(physician, copy_patient)
    second = export_patient(actor=physician, patient_id=copy_patient.pk, purpose="patient_request", recipient="X")
    assert _by_type(first, mrn=False) == _by_type(second, mrn=False)

    # And importing an export again finds every resource present: nothing new.
    again = import_bundle(_valid(renamed), actor=front_desk)
    assert all(c.imported == 0 for c in again.values())
    assert Patient.objects.count() == patients + 1


def test_the_same_record_exports_with_the_same_ids(physician: User, front_desk: User) -> None:
    source_path = min(PATIENT_FILES, key=lambda p: p.stat().st_size)
    import_paths([SAMPLES / "hospitalInformation1559319163815.json", source_path], actor=front_desk, progress=False)
    patient = _patient_of(json.loads(source_path.read_text()))
    assign(physician, patient)
    first = bundle_for(record_for_export(actor=physician, patient_id=patient.pk, purpose="legal", recipient="Court"))
    second = bundle_for(record_for_export(actor=physician, patient_id=patient.pk, purpose="legal", recipient="Court"))
    assert [e["fullUrl"] for e in first["entry"]] == [e["fullUrl"] for e in second["entry"]]
    assert all(e["fullUrl"] == f"urn:uuid:{e['resource']['id']}" for e in first["entry"])
