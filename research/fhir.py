"""A released research dataset as a FHIR R4 collection Bundle (the request's field ``fhir_bundle``).

It says exactly what the CSV files say, after de-identification and k-anonymity, and nothing more: one
Patient per released row, its id derived from the pseudonym (``rp_...`` becomes ``rp-...``: FHIR ids
allow no underscore), ``gender`` when sex was released as such, and every other released column as
an extension ``urn:healthcrypt:research:<column>`` holding the generalised value as released (an
age band, a ZIP3 or its prefix, a year: FHIR has no element for a banded age, and a birth date
element would claim a precision the dataset does not have). Conditions and medications become
Condition and MedicationStatement resources with their codes; observations become Observations with
the released year (``effectiveDateTime`` accepts a bare year) or the shifted date of the limited
tier. Scrubbed notes stay in notes.csv (a DocumentReference would add nothing but a wrapper).
A patient's entry has ``fullUrl`` ``urn:uuid:`` + a UUID5 of the pseudonym, and the other resources
point to it by that URN; no resource carries a real identifier.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

GENDERS = frozenset({"female", "male", "other", "unknown"})
EXTENSION = "urn:healthcrypt:research:{}"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CODE_SEPARATOR = ";"
NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def _patient_id(alias: str) -> str:
    return alias.replace("_", "-")[:64]


def _urn(alias: str) -> str:
    """The patient's fullUrl: derived from the pseudonym alone (it adds nothing a reader could not compute)."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, EXTENSION.format(alias))}"


def _subject(alias: str) -> dict[str, str]:
    return {"reference": _urn(alias)}


def _patient(row: Mapping[str, str]) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": _patient_id(row["pseudonym"])}
    if row.get("sex") in GENDERS:
        resource["gender"] = row["sex"]
    extensions = [
        {"url": EXTENSION.format(name), "valueString": value}
        for name, value in row.items()
        if name not in ("pseudonym", "sex", "conditions", "medications") and value
    ]
    if extensions:
        resource["extension"] = extensions
    return resource


def _codes(value: str) -> list[str]:
    return [code for code in value.split(CODE_SEPARATOR) if code]


def _observation(row: Mapping[str, str]) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": str(uuid.uuid4()),
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": row["loinc_code"]}]},
        "subject": _subject(row["pseudonym"]),
    }
    when = row.get("year") or row.get("date") or ""
    if when:
        resource["effectiveDateTime"] = when
    value = row.get("value", "")
    if NUMBER.match(value):
        quantity: dict[str, Any] = {"value": float(value) if "." in value else int(value)}
        if row.get("unit"):
            quantity["unit"] = row["unit"]
        resource["valueQuantity"] = quantity
    elif value:
        resource["valueString"] = value
    return resource


def dataset_bundle(rows: Iterable[Mapping[str, str]], observations: Iterable[Mapping[str, str]] = ()) -> dict[str, Any]:
    """The released rows (and observation rows) as a FHIR R4 collection Bundle."""
    entries: list[dict[str, Any]] = []

    def add(resource: dict[str, Any], full_url: str | None = None) -> None:
        entries.append({"fullUrl": full_url or f"urn:uuid:{resource['id']}", "resource": resource})

    for row in rows:
        add(_patient(row), _urn(row["pseudonym"]))
        for code in _codes(row.get("conditions", "")):
            add(
                {
                    "resourceType": "Condition",
                    "id": str(uuid.uuid4()),
                    "code": {"coding": [{"code": code}]},
                    "subject": _subject(row["pseudonym"]),
                }
            )
        for code in _codes(row.get("medications", "")):
            add(
                {
                    "resourceType": "MedicationStatement",
                    "id": str(uuid.uuid4()),
                    "status": "unknown",
                    "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code}]},
                    "subject": _subject(row["pseudonym"]),
                }
            )
    for row in observations:
        add(_observation(row))
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "collection", "entry": entries}
