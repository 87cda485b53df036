"""Bundles built to mislead the importer rather than to feed it: a source id another person already
has, two resources under one id or one fullUrl, values that crashed the run (a 5,000-digit number, a
lone surrogate, an instant before year 1, a directory named *.json), identifiers that were cut short
instead of refused; and stored values an export once failed on (a no-break space, a doubled space in
a code). Each file is refused on its own with a path, the next ones are imported, and no patient's
record receives another's rows."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.urls import reverse

from accounts.models import User
from exchange.fhir.export import fhir_safe
from exchange.fhir.importer import Summary, import_paths
from records.crypto import mrn_index
from records.models import Condition, Patient
from tests.factories import PatientFactory, assign

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        not Path(settings.FHIR_SCHEMA_PATH).is_file(), reason="the FHIR R4 schema (../shared/data) is absent"
    ),
]


def _patient(pid: str, mrn: str, family: str, *, full_url: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "fullUrl": full_url or f"urn:uuid:{pid}",
        "resource": {
            "resourceType": "Patient",
            "id": pid,
            "identifier": [
                {
                    "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                    "system": "urn:test:mrn",
                    "value": mrn,
                }
            ],
            "name": [{"family": family, "given": ["Test"]}],
            "gender": "female",
            "birthDate": "1980-02-03",
            **extra,
        },
    }


def _condition(cid: str, subject: str, code: str = "44054006", *, full_url: str | None = None) -> dict[str, Any]:
    return {
        "fullUrl": full_url or f"urn:uuid:cond-{cid}-{subject[-4:]}",
        "resource": {
            "resourceType": "Condition",
            "id": cid,
            "clinicalStatus": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
            },
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": code, "display": "Diabetes"}]},
            "subject": {"reference": subject},
            "onsetDateTime": "2020-01-01T10:00:00+00:00",
        },
    }


def _bundle(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def _import(tmp_path: Path, actor: User, *bundles: Any, raw: bytes | None = None) -> Summary:
    paths = []
    for number, bundle in enumerate(bundles):
        path = tmp_path / f"b{number:02d}.json"
        path.write_bytes(raw if raw is not None and number == 0 else json.dumps(bundle).encode())
        paths.append(path)
    return import_paths(paths, actor=actor, progress=False)


def _problems(summary: Summary) -> list[list[tuple[str, str]]]:
    return [[(p.path, p.message) for p in result.problems] for result in summary.files]


# --- no row joins another person's record --------------------------------------------------------------


def test_a_patient_id_already_imported_with_another_mrn_is_refused_not_merged(front_desk: User, tmp_path: Path) -> None:
    first = _bundle(_patient("1", "MRN-AAA", "Alpha"), _condition("c1", "urn:uuid:1"))
    second = _bundle(_patient("1", "MRN-BBB", "Beta"), _condition("c2", "urn:uuid:1", code="38341003"))
    summary = _import(tmp_path, front_desk, first, second)
    assert _problems(summary) == [[], [("entry[0].resource.id", "names a patient already imported with another MRN")]]
    alpha = Patient.objects.get(mrn_index=mrn_index("MRN-AAA"))
    assert [c.code for c in Condition.objects.filter(patient=alpha)] == ["44054006"]
    assert not Patient.objects.filter(mrn_index=mrn_index("MRN-BBB")).exists()


def test_the_same_patient_again_is_present_and_gets_its_new_rows(front_desk: User, tmp_path: Path) -> None:
    first = _bundle(_patient("1", "MRN-AAA", "Alpha"), _condition("c1", "urn:uuid:1"))
    again = _bundle(_patient("1", "MRN-AAA", "Alpha"), _condition("c2", "urn:uuid:1", code="38341003"))
    summary = _import(tmp_path, front_desk, first, again)
    assert _problems(summary) == [[], []]
    assert Condition.objects.count() == 2


def test_two_patients_under_one_id_in_a_bundle_are_refused(front_desk: User, tmp_path: Path) -> None:
    bundle = _bundle(
        _patient("p", "M-A", "Alpha"),
        _patient("p", "M-B", "Beta", full_url="urn:uuid:p2"),
        _condition("c", "urn:uuid:p2"),
    )
    summary = _import(tmp_path, front_desk, bundle)
    assert _problems(summary) == [[("entry[1].resource.id", "repeats the id of entry[0]")]]
    assert not Patient.objects.exists()


def test_two_patients_diagnoses_under_one_id_are_refused_not_one_dropped(front_desk: User, tmp_path: Path) -> None:
    bundle = _bundle(
        _patient("p1", "M-1", "One"),
        _patient("p2", "M-2", "Two"),
        _condition("c", "urn:uuid:p1", full_url="urn:uuid:c-1"),
        _condition("c", "urn:uuid:p2", full_url="urn:uuid:c-2"),
    )
    summary = _import(tmp_path, front_desk, bundle)
    assert _problems(summary) == [[("entry[3].resource.id", "repeats the id of entry[2]")]]
    assert not Condition.objects.exists()


def test_a_repeated_full_url_is_refused_not_the_last_one_winning(front_desk: User, tmp_path: Path) -> None:
    bundle = _bundle(
        _patient("p1", "M-1", "One"),
        _patient("p2", "M-2", "Two", full_url="urn:uuid:p1"),
        _condition("c", "urn:uuid:p1"),
    )
    summary = _import(tmp_path, front_desk, bundle)
    assert _problems(summary) == [[("entry[1].fullUrl", "repeats the fullUrl of an earlier entry")]]
    assert not Patient.objects.exists()


# --- inputs that crashed the run: a refusal for the file, the next file imported ----------------------


GOOD = _bundle(_patient("good", "M-GOOD", "Good"), _condition("g", "urn:uuid:good"))


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (
            b'{"resourceType": "Bundle", "type": "transaction", "total": ' + b"9" * 5000 + b"}",
            "the JSON holds a number with too many digits",
        ),
        (
            json.dumps(_bundle(_patient("s", "M-S", "Do\ud800e"))).encode(),
            "the JSON holds an invalid Unicode escape (a lone surrogate)",
        ),
    ],
    ids=["5,000-digit number", "lone surrogate"],
)
def test_json_python_cannot_take_is_a_refusal_and_the_next_file_goes_in(
    front_desk: User, tmp_path: Path, raw: bytes, problem: str
) -> None:
    summary = _import(tmp_path, front_desk, None, GOOD, raw=raw)
    assert _problems(summary) == [[("", problem)], []]
    assert Patient.objects.filter(mrn_index=mrn_index("M-GOOD")).exists()


@pytest.mark.parametrize("instant", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00"])
def test_an_instant_outside_the_calendar_in_utc_is_refused(front_desk: User, tmp_path: Path, instant: str) -> None:
    condition = _condition("c", "urn:uuid:x")
    condition["resource"]["onsetDateTime"] = instant
    summary = _import(tmp_path, front_desk, _bundle(_patient("x", "M-X", "Ex"), condition), GOOD)
    assert _problems(summary)[0] == [("entry[1].resource.onsetDateTime", "is out of range")]
    assert _problems(summary)[1] == []


def test_a_directory_named_like_a_bundle_is_a_refusal_not_a_crash(front_desk: User, tmp_path: Path) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a.json").mkdir()  # found by the folder's *.json like a file
    (folder / "b.json").write_text(json.dumps(GOOD))
    summary = import_paths([folder], actor=front_desk, progress=False)
    assert [result.path.name for result in summary.files] == ["a.json", "b.json"]
    ((_, message),) = _problems(summary)[0]
    assert message.startswith("the file cannot be read")
    assert _problems(summary)[1] == []


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ({"telecom": [{"system": "phone", "value": "5" * 100}]}, "entry[0].resource.telecom"),
        ({"address": [{"line": ["x" * 300]}]}, "entry[0].resource.address[0].line"),
    ],
    ids=["phone", "address"],
)
def test_an_identifier_or_address_too_long_is_refused_not_cut_short(
    front_desk: User, tmp_path: Path, extra: dict[str, Any], path: str
) -> None:
    summary = _import(tmp_path, front_desk, _bundle(_patient("t", "M-T", "Tee", **extra)))
    ((where, _),) = _problems(summary)[0]
    assert where == path
    assert not Patient.objects.exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL refuses a NUL byte in text; SQLite keeps it")
def test_a_value_the_database_refuses_is_a_refusal_of_that_file_only(front_desk: User, tmp_path: Path) -> None:
    organization = {
        "fullUrl": "urn:uuid:org-1",
        "resource": {"resourceType": "Organization", "id": "org-1", "name": "North\u0000side"},
    }
    summary = _import(tmp_path, front_desk, _bundle(_patient("n", "M-N", "Nul"), organization), GOOD)
    assert _problems(summary)[0] == [("", "refused by the database (DataError)")]
    assert _problems(summary)[1] == []
    assert not Patient.objects.filter(mrn_index=mrn_index("M-N")).exists()


# --- exports of values typed or imported with other white space ---------------------------------------


def test_fhir_safe_writes_other_white_space_as_a_space_and_collapses_codes() -> None:
    resource = {"name": [{"family": "Van\u00a0Dyke"}], "code": {"coding": [{"code": "E11  9"}]}, "n": 3}
    assert fhir_safe(resource) == {"name": [{"family": "Van Dyke"}], "code": {"coding": [{"code": "E11 9"}]}, "n": 3}


def test_a_record_with_a_no_break_space_and_a_doubled_code_space_exports(
    physician: User, client_for: Callable[[User], Client]
) -> None:
    patient = PatientFactory(family_name="Van\u00a0Dyke", city="Saint\u00a0Denis")
    assign(physician, patient)
    response = client_for(physician).post(
        reverse("exchange:export_record", args=[patient.pk]),
        {"purpose": "continuity_of_care", "recipient": "St. Elsewhere Hospital"},
    )
    assert response.status_code == 200
    bundle = json.loads(response.content)
    resource = bundle["entry"][0]["resource"]
    assert resource["name"][0]["family"] == "Van Dyke"


def test_an_export_that_still_does_not_validate_is_a_clear_page_not_a_500(
    physician: User, client_for: Callable[[User], Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    from exchange.fhir import export

    patient = PatientFactory(family_name="Quillbroken")
    assign(physician, patient)
    monkeypatch.setattr(
        export, "patient_resource", lambda p: {"resourceType": "Patient", "id": str(p.uid), "gender": 7}
    )
    response = client_for(physician).post(
        reverse("exchange:export_record", args=[patient.pk]),
        {"purpose": "continuity_of_care", "recipient": "St. Elsewhere Hospital"},
    )
    assert response.status_code == 422
    assert b"Export not possible" in response.content
    assert b"Quillbroken" not in response.content


# --- a problem's path is the element's, from the resource ------------------------------------------------


def _observation(**extra: Any) -> dict[str, Any]:
    return {
        "fullUrl": "urn:uuid:obs-1",
        "resource": {
            "resourceType": "Observation",
            "id": "obs-1",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure"}]},
            "subject": {"reference": "urn:uuid:o"},
            "effectiveDateTime": "2020-01-01T10:00:00+00:00",
            **extra,
        },
    }


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ({"valueQuantity": {"value": 1, "unit": "u" * 40}}, "entry[1].resource.valueQuantity.unit"),
        (
            {
                "component": [
                    {"code": {"coding": [{"code": "8480-6"}]}, "valueQuantity": {"value": 120, "unit": "mm[Hg]"}},
                    {"code": {"coding": [{"code": "8" * 40}]}, "valueQuantity": {"value": 80, "unit": "mm[Hg]"}},
                ]
            },
            "entry[1].resource.component[1].code.coding[0].code",
        ),
        (
            {"component": [{"code": {"coding": [{"code": "8480-6"}]}, "valueString": "x" * 300}]},
            "entry[1].resource.component[0].valueString",
        ),
    ],
    ids=["value's unit", "component's code", "component's value"],
)
def test_a_problem_inside_a_value_or_a_component_names_that_element(
    front_desk: User, tmp_path: Path, extra: dict[str, Any], path: str
) -> None:
    summary = _import(tmp_path, front_desk, _bundle(_patient("o", "M-O", "Obs"), _observation(**extra)))
    ((where, _),) = _problems(summary)[0]
    assert where == path
