"""What the importer takes from each resource (exchange/fhir/mapping.py), and what it refuses, by path."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from exchange.fhir.mapping import FieldProblem, extract

SUBJECT = {"reference": "urn:uuid:p"}


def _problem(resource: dict[str, Any]) -> FieldProblem:
    with pytest.raises(FieldProblem) as caught:
        extract(resource)
    return caught.value


def _patient(**changes: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": "p",
        "name": [{"family": "Doe", "given": ["Jo", "Ann"]}],
        "birthDate": "1990",
        "gender": "female",
        "identifier": [
            {"type": {"coding": [{"code": "MR"}]}, "value": "e925b0f3-8006-43f6-aa31-94bd215e55e7"},
            {"type": {"coding": [{"code": "SS"}]}, "value": "999-12-3456"},
        ],
        "telecom": [{"system": "email", "value": "x@example.org"}, {"system": "phone", "value": "555-0100"}],
        "deceasedDateTime": "2020-05-01T10:00:00+02:00",
    }
    resource.update(changes)
    return resource


def test_patient_fields_partial_birth_date_and_a_uuid_mrn() -> None:
    fields = extract(_patient()).fields
    assert fields["mrn"] == "e925b0f3-8006-43f6-aa31-94bd215e55e7".replace("-", "")
    assert fields["given_name"] == "Jo Ann"
    assert fields["birth_date"] == datetime.date(1990, 1, 1)
    assert fields["national_id"] == "999-12-3456"
    assert fields["phone"] == "555-0100"
    assert fields["deceased_date"] == datetime.date(2020, 5, 1)


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"identifier": []}, "identifier"),
        ({"identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": "x" * 40}]}, "identifier[0].value"),
        ({"birthDate": None}, "birthDate"),
        ({"birthDate": "1990-02-31"}, "birthDate"),
        ({"name": [{"given": ["Jo"]}]}, "name.0.family"),
        ({"name": [{"family": "Doe", "given": ["x" * 101]}]}, "name[0].given"),
    ],
)
def test_patient_problems_name_the_element(changes: dict[str, Any], path: str) -> None:
    problem = _problem(_patient(**changes))
    assert problem.path == path
    assert "Doe" not in problem.message


def test_encounter_status_and_period_are_checked() -> None:
    base = {
        "resourceType": "Encounter",
        "subject": SUBJECT,
        "class": {"code": "EMER"},
        "period": {"start": "2020-01-01"},
    }
    fields = extract({**base, "status": "arrived"}).fields
    assert (fields["kind"], fields["status"]) == ("emergency", "in_progress")
    assert _problem({**base, "status": "bogus"}).path == "status"
    backwards = {
        **base,
        "status": "finished",
        "period": {"start": "2020-01-02T00:00:00Z", "end": "2020-01-01T00:00:00Z"},
    }
    assert _problem(backwards).path == "period.end"
    assert _problem({**base, "status": "finished", "period": {"start": "2020-01-01T10:00:00"}}).message.endswith(
        "without a time zone"
    )
    assert _problem({**base, "status": "finished", "period": {"start": "2020-13-01T10:00:00Z"}}).path == "period.start"
    assert _problem({**base, "status": "finished", "subject": {}}).path == "subject.reference"


def _observation(**changes: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "subject": SUBJECT,
        "code": {"coding": [{"code": "72166-2", "display": "Tobacco smoking status"}]},
        "effectiveDateTime": "2020-01-01T10:00:00Z",
    }
    resource.update(changes)
    return resource


def test_observation_values_of_every_kind() -> None:
    coded = extract(_observation(valueCodeableConcept={"coding": [{"display": "Never smoker"}]})).fields
    assert (coded["value"], coded["unit"], coded["category"]) == ("Never smoker", "", "other")
    assert extract(_observation(valueString="text")).fields["value"] == "text"
    mixed = extract(
        _observation(
            component=[
                {"code": {"coding": [{"code": "a"}]}, "valueQuantity": {"value": 1, "unit": "x"}},
                {"code": {"coding": [{"code": "b"}]}, "valueInteger": 2},
            ]
        )
    )
    assert (mixed.fields["value"], mixed.fields["unit"]) == ("1 / 2", "")
    assert [c["loinc_code"] for c in mixed.components] == ["a", "b"]


def test_observation_problems() -> None:
    assert _problem(_observation()).path == "value[x]"
    assert _problem(_observation(status="cancelled")).path == "status"
    assert _problem(_observation(component=[{"code": {"coding": [{"code": "a"}]}}])).path == "component[0].value[x]"
    long = [{"code": {"coding": [{"code": "a"}]}, "valueString": "x" * 200}] * 2
    assert _problem(_observation(component=long)).path == "component"


def test_medication_dosage_from_its_timing_and_a_reference_refused() -> None:
    base = {
        "resourceType": "MedicationRequest",
        "status": "on-hold",
        "subject": SUBJECT,
        "authoredOn": "2020-01-01T10:00:00Z",
        "medicationCodeableConcept": {"coding": [{"code": "313782", "display": "Acetaminophen 325 MG"}]},
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
                "asNeededBoolean": True,
                "doseAndRate": [{"doseQuantity": {"value": 1}}],
            }
        ],
    }
    fields = extract(base).fields
    assert fields["status"] == "active"
    assert fields["dosage"] == "1, 2 time(s) every 1 d, as needed"
    without = {k: v for k, v in base.items() if k != "medicationCodeableConcept"}
    assert _problem({**without, "medicationReference": {"reference": "urn:uuid:m"}}).path == "medicationCodeableConcept"


def test_allergy_snomed_codes_are_prefixed_and_rxnorm_kept() -> None:
    base = {"resourceType": "AllergyIntolerance", "patient": SUBJECT, "recordedDate": "2020-01-01T10:00:00Z"}
    snomed = extract(
        {**base, "code": {"coding": [{"system": "http://snomed.info/sct", "code": "419474003", "display": "Mould"}]}}
    )
    assert snomed.fields["code"] == "sct:419474003"
    rxnorm = extract(
        {
            **base,
            "code": {
                "coding": [
                    {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "7980", "display": "Penicillin G"}
                ]
            },
            "reaction": [{"manifestation": [{"coding": [{"display": "Hives"}]}], "severity": "mild"}],
        }
    )
    assert (rxnorm.fields["code"], rxnorm.fields["reaction"], rxnorm.fields["severity"]) == ("7980", "Hives", "mild")


def test_imaging_study_counts_and_uid() -> None:
    fields = extract(
        {
            "resourceType": "ImagingStudy",
            "subject": SUBJECT,
            "identifier": [{"value": "urn:oid:1.2.840.99"}],
            "started": "2020-01-01T10:00:00Z",
            "series": [{"modality": {"code": "DX"}, "bodySite": {"display": "Chest"}, "instance": [{}, {}]}],
        }
    ).fields
    assert (fields["study_uid"], fields["modality"], fields["body_site"]) == ("1.2.840.99", "DX", "Chest")
    assert (fields["series_count"], fields["instance_count"]) == (1, 2)


def test_a_structure_the_importer_cannot_read_is_a_problem_not_a_crash() -> None:
    problem = _problem(_patient(identifier=[None]))
    assert "cannot read" in problem.message
