"""Export a patient's record as a FHIR R4 Bundle of type "collection" (DESIGN.md §9, issue 12).

The inverse of exchange/fhir/mapping.py: what the importer takes from each resource type is what is
written here, so that importing an export gives back the same rows and values. Codes keep their
systems (LOINC, SNOMED CT, RxNorm, CVX): the record stores the code, and each kind of row has one
system (an allergy's ``sct:`` prefix says SNOMED CT; an allergen class has our own system).

Every resource's ``id`` and ``fullUrl`` (``urn:uuid:``) is the row's ``row_uid``: stable across
exports of the same record, and meaningless outside it. The ids of the source system a row was
imported from are kept only as a keyed hash (records.crypto.source_index), so they cannot be written
out; re-importing an export into this hospital meets the patient's medical record number and is
refused as a duplicate, never imported twice.

``export_patient`` reads through the audited path (records.selectors.export: access and disclosure
events first), builds the bundle and validates it against the R4 schema (exchange/fhir/validate.py)
in one transaction: an export that does not validate is a bug, raised, never emitted, and its
disclosure event is rolled back with it since nothing left the hospital.
"""

from __future__ import annotations

import datetime
import json
import re
import uuid
from typing import Any

from django.db import transaction
from django.utils import timezone

from exchange.fhir.mapping import RESULT_COUNT_EXTENSION
from exchange.fhir.validate import BundleInvalid, validate_bundle
from records.selectors.export import (
    ExportAllergy,
    ExportComponent,
    ExportCondition,
    ExportEncounter,
    ExportEvent,
    ExportImagingStudy,
    ExportMedication,
    ExportObservation,
    ExportPatient,
    ExportRecord,
    ExportReport,
    record_for_export,
)

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
UCUM = "http://unitsofmeasure.org"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
V2_IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
# Identifier systems of this hospital (set FHIR_IDENTIFIER_BASE-style names here if a registry assigns them).
MRN_SYSTEM = "urn:healthcrypt:mrn"
NATIONAL_ID_SYSTEM = "http://hl7.org/fhir/sid/us-ssn"
ALLERGEN_CLASS_SYSTEM = "urn:healthcrypt:allergen-class"

ENCOUNTER_CLASSES = {"ambulatory": "AMB", "wellness": "AMB", "emergency": "EMER", "inpatient": "IMP", "virtual": "VR"}
ENCOUNTER_STATUSES = {
    "planned": "planned",
    "in_progress": "in-progress",
    "finished": "finished",
    "cancelled": "cancelled",
}
REACTION_SEVERITIES = {"mild", "moderate", "severe"}
CRITICALITIES = {"low", "high", "unable-to-assess"}
REPORT_STATUSES = {"registered", "partial", "preliminary", "final", "amended", "corrected", "appended", "cancelled"}
IMAGING_STATUSES = {"registered", "available", "cancelled", "entered-in-error", "unknown"}


class ExportInvalid(Exception):
    """The bundle built does not validate: a bug in this module, never sent. Names paths, never values."""


# FHIR's string allows only space, tab, CR and LF as white space; a code, single spaces between
# non-blank parts. Values typed or imported with other white space (a no-break space in "Van Dyke",
# two spaces in a code) are written the way FHIR allows, so that such a record can still be exported.
_OTHER_WHITE_SPACE = re.compile(r"[^\S \t\r\n]")


def fhir_safe(value: Any, key: str = "") -> Any:
    """``value`` (a resource, or any part of one) with its strings as FHIR allows them: other white
    space as a space; a ``code`` with its white space collapsed to single spaces. Nothing else changes."""
    if isinstance(value, dict):
        return {name: fhir_safe(child, name) for name, child in value.items()}
    if isinstance(value, list):
        return [fhir_safe(child, key) for child in value]
    if isinstance(value, str):
        return " ".join(value.split()) if key == "code" else _OTHER_WHITE_SPACE.sub(" ", value)
    return value


def _urn(uid: uuid.UUID) -> str:
    return f"urn:uuid:{uid}"


def _ref(uid: uuid.UUID) -> dict[str, str]:
    return {"reference": _urn(uid)}


def _instant(value: datetime.datetime) -> str:
    return value.isoformat()


def _concept(system: str, code: str, display: str) -> dict[str, Any]:
    concept: dict[str, Any] = {}
    if code:
        coding = {"system": system, "code": code}
        if display:
            coding["display"] = display
        concept["coding"] = [coding]
    if display:
        concept["text"] = display
    return concept


def _number(text: str) -> int | float | None:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    return number if number == number and number not in (float("inf"), float("-inf")) else None


def _value(value: str, unit: str) -> dict[str, Any]:
    """``valueQuantity`` for a number (with its UCUM unit), ``valueString`` for anything else."""
    number = _number(value)
    if number is not None:
        quantity: dict[str, Any] = {"value": number}
        if unit:
            quantity.update({"unit": unit, "system": UCUM, "code": unit})
        return {"valueQuantity": quantity}
    return {"valueString": value}


def _with_encounter(resource: dict[str, Any], encounter: uuid.UUID | None) -> dict[str, Any]:
    if encounter is not None:
        resource["encounter"] = _ref(encounter)
    return resource


def patient_resource(p: ExportPatient, *, national_id: bool = True) -> dict[str, Any]:
    """The Patient resource. ``national_id``: include the national identifier (SSN) if there is one;
    the partner API leaves it out unless the sharing is for treatment or payment (minimum necessary)."""
    identifiers: list[dict[str, Any]] = [
        {"type": {"coding": [{"system": V2_IDENTIFIER_TYPE, "code": "MR"}]}, "system": MRN_SYSTEM, "value": p.mrn}
    ]
    if national_id and p.national_id:
        identifiers.append(
            {
                "type": {"coding": [{"system": V2_IDENTIFIER_TYPE, "code": "SS"}]},
                "system": NATIONAL_ID_SYSTEM,
                "value": p.national_id,
            }
        )
    name: dict[str, Any] = {"use": "official", "family": p.family_name}
    if p.given_name:
        name["given"] = p.given_name.split()
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": str(p.uid),
        "identifier": identifiers,
        "name": [name],
        "gender": p.sex,
        "birthDate": p.birth_date.isoformat(),
    }
    if p.phone:
        resource["telecom"] = [{"system": "phone", "value": p.phone}]
    address: dict[str, Any] = {}
    if p.address_line:
        address["line"] = [p.address_line]
    for key, value in (("city", p.city), ("state", p.state), ("postalCode", p.postal_code)):
        if value:
            address[key] = value
    if address:
        resource["address"] = [address]
    if p.deceased_date is not None:
        resource["deceasedDateTime"] = p.deceased_date.isoformat()
    return resource


def encounter_resource(e: ExportEncounter, patient: uuid.UUID) -> dict[str, Any]:
    period = {"start": _instant(e.starts_at)}
    if e.ends_at is not None:
        period["end"] = _instant(e.ends_at)
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": str(e.uid),
        "status": ENCOUNTER_STATUSES[e.status],
        "class": {"system": ACT_CODE, "code": ENCOUNTER_CLASSES[e.kind]},
        "subject": _ref(patient),
        "period": period,
    }
    if e.type_code or e.type_display:
        resource["type"] = [_concept(SNOMED, e.type_code, e.type_display)]
    if e.reason:
        resource["reasonCode"] = [{"text": e.reason}]
    if e.location:
        resource["location"] = [{"location": {"display": e.location}}]
    return resource


def condition_resource(c: ExportCondition, patient: uuid.UUID) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": str(c.uid),
        "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": c.clinical_status}]},
        "code": _concept(SNOMED, c.code, c.display),
        "subject": _ref(patient),
        "recordedDate": _instant(c.recorded_at),
    }
    if c.onset_date is not None:
        resource["onsetDateTime"] = c.onset_date.isoformat()
    if c.abatement_date is not None:
        resource["abatementDateTime"] = c.abatement_date.isoformat()
    return _with_encounter(resource, c.encounter)


def _component(c: ExportComponent) -> dict[str, Any]:
    return {"code": _concept(LOINC, c.loinc_code, c.display), **_value(c.value, c.unit)}


def observation_resource(o: ExportObservation, patient: uuid.UUID) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": str(o.uid),
        "status": o.status,
        "code": _concept(LOINC, o.loinc_code, o.display),
        "subject": _ref(patient),
        "effectiveDateTime": _instant(o.effective_at),
    }
    if o.category != "other":
        resource["category"] = [{"coding": [{"system": OBSERVATION_CATEGORY, "code": o.category}]}]
    if o.components:
        resource["component"] = [_component(c) for c in o.components]
    joined = " / ".join(c.value for c in o.components)
    if not o.components or o.value != joined:
        # A panel's own value is the components' values joined (mapping.py); only another value is sent.
        resource.update(_value(o.value, o.unit))
    return _with_encounter(resource, o.encounter)


def report_resource(r: ExportReport, patient: uuid.UUID) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": str(r.uid),
        "status": r.status if r.status in REPORT_STATUSES else "unknown",
        "code": _concept(LOINC, r.code, r.display),
        "subject": _ref(patient),
        "effectiveDateTime": _instant(r.effective_at),
    }
    if r.result_count:
        # Which observations were the results is not kept (only their number): no reference is invented.
        resource["extension"] = [{"url": RESULT_COUNT_EXTENSION, "valueUnsignedInt": r.result_count}]
    if r.conclusion:
        resource["conclusion"] = r.conclusion
    return _with_encounter(resource, r.encounter)


def medication_resource(m: ExportMedication, patient: uuid.UUID) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": str(m.uid),
        "status": m.status,
        "intent": "order",
        "medicationCodeableConcept": _concept(RXNORM, m.code, m.display),
        "subject": _ref(patient),
        "authoredOn": _instant(m.prescribed_at),
    }
    if m.dosage:
        resource["dosageInstruction"] = [{"text": m.dosage}]
    return _with_encounter(resource, m.encounter)


def procedure_resource(p: ExportEvent, patient: uuid.UUID) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Procedure",
        "id": str(p.uid),
        "status": "completed",
        "code": _concept(SNOMED, p.code, p.display),
        "subject": _ref(patient),
        "performedDateTime": _instant(p.at),
    }
    return _with_encounter(resource, p.encounter)


def immunization_resource(i: ExportEvent, patient: uuid.UUID) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Immunization",
        "id": str(i.uid),
        "status": "completed",
        "vaccineCode": _concept(CVX, i.code, i.display),
        "patient": _ref(patient),
        "occurrenceDateTime": _instant(i.at),
    }
    return _with_encounter(resource, i.encounter)


def _allergy_code(code: str) -> tuple[str, str]:
    if code.startswith("sct:"):
        return SNOMED, code.removeprefix("sct:")
    if code.startswith("class:"):
        return ALLERGEN_CLASS_SYSTEM, code
    return RXNORM, code


def allergy_resource(a: ExportAllergy, patient: uuid.UUID) -> dict[str, Any]:
    system, code = _allergy_code(a.code)
    resource: dict[str, Any] = {
        "resourceType": "AllergyIntolerance",
        "id": str(a.uid),
        "code": _concept(system, code, a.substance),
        "patient": _ref(patient),
        "recordedDate": _instant(a.recorded_at),
    }
    severity = a.severity.strip().lower()
    if a.reaction:
        reaction: dict[str, Any] = {"manifestation": [{"coding": [{"system": SNOMED, "display": a.reaction}]}]}
        if severity in REACTION_SEVERITIES:
            reaction["severity"] = severity
        resource["reaction"] = [reaction]
    if severity in CRITICALITIES:
        resource["criticality"] = severity
    return resource


def _dicom_uid(uid: uuid.UUID) -> str:
    """A DICOM UID made from a UUID (the 2.25 root, PS3.5 B.2): for a series element FHIR requires."""
    return f"2.25.{uid.int}"


def imaging_resource(s: ExportImagingStudy, patient: uuid.UUID) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "ImagingStudy",
        "id": str(s.uid),
        "status": s.status if s.status in IMAGING_STATUSES else "unknown",
        "subject": _ref(patient),
        "started": _instant(s.started_at),
        "numberOfSeries": s.series_count,
        "numberOfInstances": s.instance_count,
    }
    if s.study_uid:
        resource["identifier"] = [{"system": "urn:dicom:uid", "value": f"urn:oid:{s.study_uid}"}]
    if s.modality:
        resource["modality"] = [{"system": DICOM, "code": s.modality}]
    if s.description:
        resource["description"] = s.description
    if s.body_site and s.modality:
        resource["series"] = [
            {
                "uid": _dicom_uid(s.uid),
                "modality": {"system": DICOM, "code": s.modality},
                "bodySite": {"system": SNOMED, "display": s.body_site},
            }
        ]
    return _with_encounter(resource, s.encounter)


def bundle_for(record: ExportRecord, *, now: datetime.datetime | None = None) -> dict[str, Any]:
    """The record as a FHIR R4 collection Bundle, validated. ExportInvalid if it does not validate."""
    if record.patient is None:
        raise ValueError("A bundle holds the patient: read the record with its demographics.")
    patient = record.patient_uid
    resources: list[dict[str, Any]] = [patient_resource(record.patient)]
    resources += [encounter_resource(e, patient) for e in record.encounters]
    resources += [condition_resource(c, patient) for c in record.conditions]
    resources += [observation_resource(o, patient) for o in record.observations]
    resources += [report_resource(r, patient) for r in record.reports]
    resources += [medication_resource(m, patient) for m in record.medications]
    resources += [procedure_resource(p, patient) for p in record.procedures]
    resources += [immunization_resource(i, patient) for i in record.immunizations]
    resources += [allergy_resource(a, patient) for a in record.allergies]
    resources += [imaging_resource(s, patient) for s in record.imaging_studies]
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "collection",
        "timestamp": _instant(now or timezone.now()),
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": fhir_safe(r)} for r in resources],
    }
    try:
        validate_bundle(bundle, known=lambda *target: False)
    except BundleInvalid as error:
        # Paths and the kind of problem only (validate.py never quotes a value).
        raise ExportInvalid(f"the export does not validate: {error}") from error
    return bundle


def export_patient(*, actor: Any, patient_id: int, purpose: str, recipient: str) -> dict[str, Any]:
    """Read (audited, a disclosure), build and validate a patient's export, in one transaction.

    Raises what ``record_for_export`` raises (AccessRefused, AccessNotRecorded, ExportRequestInvalid)
    and ExportInvalid; in every case nothing is returned and no disclosure is left recorded.
    """
    with transaction.atomic():
        return bundle_for(record_for_export(actor=actor, patient_id=patient_id, purpose=purpose, recipient=recipient))


def dumps(bundle: dict[str, Any]) -> str:
    """The bundle as the JSON text written out (UTF-8, no ASCII escapes, two-space indent)."""
    return json.dumps(bundle, ensure_ascii=False, indent=2)
