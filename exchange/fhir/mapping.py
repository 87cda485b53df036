"""What the importer takes from each FHIR R4 resource type, and the checks of the elements it needs.

``extract(resource)`` returns the model fields and the references of one resource, or raises
:class:`FieldProblem` naming the element (a path relative to the resource) and what is wrong with
it, never its value. The validator runs it on every entry before anything is written; the importer
uses what it returned. Codes are kept as the source gives them (LOINC, SNOMED CT, RxNorm, CVX);
an allergy's SNOMED CT code is prefixed ``sct:`` so it can never be read as an RxNorm drug code by
the allergy check (records/services/safety.py), which compares RxCUIs.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Practitioner and Organization go to the exchange directory; the others into the patient's record.
DIRECTORY_TYPES = ("Organization", "Practitioner")
RECORD_TYPES = (
    "Patient",
    "Encounter",
    "Condition",
    "Observation",
    "DiagnosticReport",
    "MedicationRequest",
    "Procedure",
    "Immunization",
    "AllergyIntolerance",
    "ImagingStudy",
)
IMPORTED_TYPES = frozenset((*DIRECTORY_TYPES, *RECORD_TYPES))

SNOMED = "http://snomed.info/sct"
# A DiagnosticReport's number of results when its ``result`` references are not sent: our own export
# (exchange/fhir/export.py) keeps the number, not which observations they were.
RESULT_COUNT_EXTENSION = "urn:healthcrypt:fhir:StructureDefinition:diagnostic-report-result-count"
ENCOUNTER_KINDS = {"AMB": "ambulatory", "EMER": "emergency", "IMP": "inpatient", "ACUTE": "inpatient", "VR": "virtual"}
ENCOUNTER_STATUSES = {
    "planned": "planned",
    "arrived": "in_progress",
    "triaged": "in_progress",
    "in-progress": "in_progress",
    "onleave": "in_progress",
    "finished": "finished",
    "cancelled": "cancelled",
    "entered-in-error": "cancelled",
    "unknown": "finished",
}
OBSERVATION_CATEGORIES = {"vital-signs", "laboratory", "imaging", "survey", "social-history", "exam"}
OBSERVATION_STATUSES = {"final": "final", "amended": "amended", "corrected": "amended", "preliminary": "preliminary"}
MEDICATION_STATUSES = {"active": "active", "on-hold": "active", "completed": "completed"}
SEX = {"female": "female", "male": "male", "other": "other", "unknown": "unknown"}


class FieldProblem(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass
class Extracted:
    """The model fields of one resource, its references by role, and (observations) its components."""

    fields: dict[str, Any]
    refs: dict[str, str] = field(default_factory=dict)
    components: list[dict[str, Any]] = field(default_factory=list)


def _get(resource: dict[str, Any], path: str) -> Any:
    value: Any = resource
    for part in path.split("."):
        if isinstance(value, list):
            value = value[int(part)] if part.isdigit() and int(part) < len(value) else None
        elif isinstance(value, dict):
            value = value.get(part)
        else:
            return None
        if value is None:
            return None
    return value


def _first(resource: dict[str, Any], *paths: str) -> tuple[str, Any]:
    for path in paths:
        value = _get(resource, path)
        if value not in (None, "", []):
            return path, value
    return paths[0], None


def _text(resource: dict[str, Any], *paths: str, limit: int, required: bool = False) -> str:
    path, value = _first(resource, *paths)
    if value is None:
        if required:
            raise FieldProblem(path, "is missing")
        return ""
    text = str(value).strip()
    if len(text) > limit:
        raise FieldProblem(path, f"is longer than {limit} characters")
    return text


def _parse_datetime(path: str, value: Any) -> datetime.datetime:
    text = str(value)
    try:
        if "T" in text:
            parsed = datetime.datetime.fromisoformat(text)
            if parsed.tzinfo is None:
                raise FieldProblem(path, "is a date-time without a time zone")
            # In UTC now, as it is stored: 0001-01-01T00:00+14:00 is a valid FHIR instant before year 1.
            return parsed.astimezone(datetime.UTC)
        return datetime.datetime.combine(_parse_date(path, text), datetime.time(), tzinfo=datetime.UTC)
    except OverflowError as error:
        raise FieldProblem(path, "is out of range") from error
    except ValueError as error:
        raise FieldProblem(path, "is not a valid date-time") from error


def _parse_date(path: str, value: Any) -> datetime.date:
    text = str(value)[:10]
    # FHIR allows a year or a year and month alone; the record keeps the first day of it.
    padded = {4: f"{text}-01-01", 7: f"{text}-01"}.get(len(text), text)
    try:
        return datetime.date.fromisoformat(padded)
    except ValueError as error:
        raise FieldProblem(path, "is not a valid date") from error


def _when(resource: dict[str, Any], *paths: str, required: bool = True) -> datetime.datetime | None:
    path, value = _first(resource, *paths)
    if value is None:
        if required:
            raise FieldProblem(path, "is missing")
        return None
    return _parse_datetime(path, value)


def _day(resource: dict[str, Any], *paths: str) -> datetime.date | None:
    path, value = _first(resource, *paths)
    return None if value is None else _parse_date(path, value)


def _ref(resource: dict[str, Any], path: str, *, required: bool = True) -> str:
    value = _get(resource, f"{path}.reference")
    if not isinstance(value, str) or not value:
        if required:
            raise FieldProblem(f"{path}.reference", "is missing")
        return ""
    return value


def _coded(resource: dict[str, Any], base: str, *, code_limit: int = 64, required: bool = True) -> tuple[str, str]:
    code = _text(resource, f"{base}.coding.0.code", limit=code_limit, required=required)
    display = _text(
        resource, f"{base}.text", f"{base}.coding.0.display", f"{base}.coding.0.code", limit=255, required=required
    )
    return code, display


def _patient(r: dict[str, Any]) -> Extracted:
    family = _text(r, "name.0.family", limit=100, required=True)
    given_parts = _get(r, "name.0.given") or []
    given = " ".join(str(part) for part in given_parts).strip()
    if len(given) > 100:
        raise FieldProblem("name[0].given", "is longer than 100 characters")
    birth = _day(r, "birthDate")
    if birth is None:
        raise FieldProblem("birthDate", "is missing")
    mrn = ""
    national_id = ""
    for index, identifier in enumerate(r.get("identifier", [])):
        code = _get(identifier, "type.coding.0.code")
        value = str(identifier.get("value", "")).strip()
        if code == "MR" and not mrn:
            # A UUID (Synthea's medical record numbers) loses its hyphens to fit the 32 characters of an MRN.
            mrn = value.replace("-", "") if len(value) == 36 else value
            if len(mrn) > 32:
                raise FieldProblem(f"identifier[{index}].value", "is a medical record number longer than 32 characters")
        elif code == "SS" and not national_id:
            if len(value) > 32:
                raise FieldProblem(f"identifier[{index}].value", "is a national identifier longer than 32 characters")
            national_id = value
    if not mrn:
        raise FieldProblem("identifier", "has no medical record number (type MR)")
    fields: dict[str, Any] = {
        "mrn": mrn,
        "given_name": given,
        "family_name": family,
        "birth_date": birth,
        "sex": SEX.get(str(r.get("gender", "unknown")), "unknown"),
        "address_line": _address_line(r),
        "city": _text(r, "address.0.city", limit=100),
        "state": _text(r, "address.0.state", limit=64),
        "postal_code": _text(r, "address.0.postalCode", limit=16),
        "national_id": national_id,
    }
    for telecom in r.get("telecom", []):
        if telecom.get("system") == "phone":
            phone = str(telecom.get("value", "")).strip()
            if len(phone) > 32:
                raise FieldProblem("telecom", "holds a phone number longer than 32 characters")
            fields["phone"] = phone
            break
    deceased = _day(r, "deceasedDateTime")
    if deceased is not None:
        fields["deceased_date"] = deceased
    return Extracted(fields)


def _encounter(r: dict[str, Any]) -> Extracted:
    status = ENCOUNTER_STATUSES.get(str(r.get("status")))
    if status is None:
        raise FieldProblem("status", "is not an encounter status")
    type_code, type_display = _coded(r, "type.0", required=False)
    starts = _when(r, "period.start")
    ends = _when(r, "period.end", required=False)
    if starts is not None and ends is not None and ends < starts:
        raise FieldProblem("period.end", "is before period.start")
    return Extracted(
        {
            "kind": ENCOUNTER_KINDS.get(str(_get(r, "class.code")), "ambulatory"),
            "status": status,
            "starts_at": starts,
            "ends_at": ends,
            "reason": _text(r, "reasonCode.0.coding.0.display", "reasonCode.0.text", limit=500),
            "type_code": type_code,
            "type_display": type_display,
            "location": _text(r, "location.0.location.display", limit=200),
        },
        refs={"patient": _ref(r, "subject")},
    )


def _condition(r: dict[str, Any]) -> Extracted:
    code, display = _coded(r, "code")
    recorded = _when(r, "recordedDate", "onsetDateTime", "onsetPeriod.start")
    return Extracted(
        {
            "code": code,
            "display": display,
            "clinical_status": _text(r, "clinicalStatus.coding.0.code", limit=20) or "active",
            "onset_date": _day(r, "onsetDateTime", "onsetPeriod.start"),
            "abatement_date": _day(r, "abatementDateTime", "abatementPeriod.start"),
            "recorded_at": recorded,
        },
        refs={"patient": _ref(r, "subject"), "encounter": _ref(r, "encounter", required=False)},
    )


def _under(base: str, problem: FieldProblem) -> FieldProblem:
    """``problem`` of a part of the resource (a component), with its path from the resource."""
    return FieldProblem(f"{base}.{problem.path}" if base else problem.path, problem.message)


def _value(r: dict[str, Any], base: str) -> tuple[str, str] | None:
    """The value of an observation (``base`` "") or of one of its components (``base`` "component[i]"),
    as text, with its unit; a problem's path is from the resource."""
    try:
        quantity = _get(r, "valueQuantity")
        if isinstance(quantity, dict) and "value" in quantity:
            try:
                return _text(quantity, "value", limit=255), _text(quantity, "unit", "code", limit=32)
            except FieldProblem as problem:
                raise _under("valueQuantity", problem) from None
        for key in ("valueCodeableConcept",):
            if key in r:
                return _text(r, f"{key}.text", f"{key}.coding.0.display", f"{key}.coding.0.code", limit=255), ""
        for key in ("valueString", "valueInteger", "valueBoolean", "valueDateTime", "valueTime"):
            if key in r:
                return _text(r, key, limit=255), ""
        return None
    except FieldProblem as problem:
        raise _under(base, problem) from None


def _observation(r: dict[str, Any]) -> Extracted:
    category = str(_get(r, "category.0.coding.0.code") or "other")
    status = OBSERVATION_STATUSES.get(str(r.get("status")))
    if status is None:
        raise FieldProblem("status", "is not a status of a result we import")
    loinc, display = _coded(r, "code", code_limit=32)
    components = []
    for index, component in enumerate(r.get("component", [])):
        try:
            c_code, c_display = _coded(component, "code", code_limit=32)
        except FieldProblem as problem:
            raise _under(f"component[{index}]", problem) from None
        c_value = _value(component, f"component[{index}]")
        if c_value is None:
            raise FieldProblem(f"component[{index}].value[x]", "is missing")
        components.append({"loinc_code": c_code, "display": c_display, "value": c_value[0], "unit": c_value[1]})
    value = _value(r, "")
    if value is None:
        if not components:
            raise FieldProblem("value[x]", "is missing (neither a value nor components)")
        units = {c["unit"] for c in components}
        joined = " / ".join(c["value"] for c in components)
        if len(joined) > 255:
            raise FieldProblem("component", "values are longer than 255 characters together")
        value = (joined, units.pop() if len(units) == 1 else "")
    return Extracted(
        {
            "category": category if category in OBSERVATION_CATEGORIES else "other",
            "status": status,
            "loinc_code": loinc,
            "display": display,
            "value": value[0],
            "unit": value[1],
            "effective_at": _when(r, "effectiveDateTime", "effectivePeriod.start", "issued"),
        },
        refs={"patient": _ref(r, "subject"), "encounter": _ref(r, "encounter", required=False)},
        components=components,
    )


def _result_count_extension(r: dict[str, Any]) -> int:
    for index, extension in enumerate(r.get("extension", [])):
        if extension.get("url") == RESULT_COUNT_EXTENSION:
            count = extension.get("valueUnsignedInt")
            if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= 100_000:
                raise FieldProblem(f"extension.{index}.valueUnsignedInt", "is not a number of results")
            return count
    return 0


def _diagnostic_report(r: dict[str, Any]) -> Extracted:
    code, display = _coded(r, "code")
    return Extracted(
        {
            "status": _text(r, "status", limit=20) or "final",
            "code": code,
            "display": display,
            "conclusion": _text(r, "conclusion", limit=10_000),
            "result_count": len(r.get("result", [])) or _result_count_extension(r),
            "effective_at": _when(r, "effectiveDateTime", "effectivePeriod.start", "issued"),
        },
        refs={"patient": _ref(r, "subject"), "encounter": _ref(r, "encounter", required=False)},
    )


def _dosage(r: dict[str, Any]) -> str:
    text = _text(r, "dosageInstruction.0.text", limit=255)
    if text:
        return text
    repeat = _get(r, "dosageInstruction.0.timing.repeat") or {}
    dose = _get(r, "dosageInstruction.0.doseAndRate.0.doseQuantity.value")
    parts = []
    if dose is not None:
        parts.append(f"{dose}")
    if repeat.get("frequency") and repeat.get("period"):
        parts.append(f"{repeat['frequency']} time(s) every {repeat['period']} {repeat.get('periodUnit', '')}".strip())
    if _get(r, "dosageInstruction.0.asNeededBoolean"):
        parts.append("as needed")
    return ", ".join(parts)[:255]


def _medication_request(r: dict[str, Any]) -> Extracted:
    if "medicationCodeableConcept" not in r:
        raise FieldProblem("medicationCodeableConcept", "is missing (a medicationReference is not imported)")
    code, display = _coded(r, "medicationCodeableConcept")
    return Extracted(
        {
            "status": MEDICATION_STATUSES.get(str(r.get("status")), "stopped"),
            "code": code,
            "display": display,
            "dosage": _dosage(r),
            "prescribed_at": _when(r, "authoredOn"),
        },
        refs={"patient": _ref(r, "subject"), "encounter": _ref(r, "encounter", required=False)},
    )


def _procedure(r: dict[str, Any]) -> Extracted:
    code, display = _coded(r, "code")
    return Extracted(
        {"code": code, "display": display, "performed_at": _when(r, "performedDateTime", "performedPeriod.start")},
        refs={"patient": _ref(r, "subject"), "encounter": _ref(r, "encounter", required=False)},
    )


def _immunization(r: dict[str, Any]) -> Extracted:
    code, display = _coded(r, "vaccineCode")
    return Extracted(
        {"code": code, "display": display, "occurred_at": _when(r, "occurrenceDateTime")},
        refs={"patient": _ref(r, "patient"), "encounter": _ref(r, "encounter", required=False)},
    )


def _allergy(r: dict[str, Any]) -> Extracted:
    code = _text(r, "code.coding.0.code", limit=56)
    if code and _get(r, "code.coding.0.system") == SNOMED:
        code = f"sct:{code}"
    return Extracted(
        {
            "substance": _text(r, "code.text", "code.coding.0.display", limit=255, required=True),
            "code": code,
            "reaction": _text(
                r, "reaction.0.manifestation.0.coding.0.display", "reaction.0.manifestation.0.text", limit=255
            ),
            "severity": _text(r, "reaction.0.severity", "criticality", limit=20),
            "recorded_at": _when(r, "recordedDate", "onsetDateTime"),
        },
        refs={"patient": _ref(r, "patient")},
    )


def _imaging_study(r: dict[str, Any]) -> Extracted:
    series = r.get("series", [])
    uid = _text(r, "identifier.0.value", limit=136).removeprefix("urn:oid:")
    if len(uid) > 128:
        raise FieldProblem("identifier.0.value", "is a study UID longer than 128 characters")
    return Extracted(
        {
            "status": _text(r, "status", limit=20) or "available",
            "study_uid": uid,
            "modality": _text(r, "modality.0.code", "series.0.modality.code", limit=16),
            "body_site": _text(r, "series.0.bodySite.display", "series.0.bodySite.code", limit=255),
            "description": _text(r, "description", "procedureCode.0.text", "series.0.description", limit=255),
            "series_count": _count(r, "numberOfSeries", len(series)),
            "instance_count": _count(r, "numberOfInstances", sum(len(s.get("instance", [])) for s in series)),
            "started_at": _when(r, "started", "series.0.started"),
        },
        refs={"patient": _ref(r, "subject"), "encounter": _ref(r, "encounter", required=False)},
    )


def _practitioner(r: dict[str, Any]) -> Extracted:
    name = " ".join(
        str(part)
        for part in [
            *(_get(r, "name.0.prefix") or []),
            *(_get(r, "name.0.given") or []),
            _get(r, "name.0.family") or "",
        ]
        if part
    )
    _directory_identifier(r)
    return Extracted({"name": name[:255]})


def _organization(r: dict[str, Any]) -> Extracted:
    _directory_identifier(r)
    return Extracted({"name": _text(r, "name", limit=255)})


def _directory_identifier(r: dict[str, Any]) -> None:
    """The first identifier, which the directory keeps (and conditional references look up): each
    part at most 255 characters, as its columns."""
    for part in ("system", "value"):
        value = _get(r, f"identifier.0.{part}")
        if value is not None and len(str(value)) > 255:
            raise FieldProblem(f"identifier.0.{part}", "is longer than 255 characters")


def _address_line(r: dict[str, Any]) -> str:
    line = " ".join(str(part) for part in (_get(r, "address.0.line") or [])).strip()
    if len(line) > 200:
        raise FieldProblem("address.0.line", "is longer than 200 characters")
    return line


def _count(r: dict[str, Any], name: str, default: int) -> int:
    """A count of the resource (unsignedInt): a whole number from 0 to 2^31 - 1, never a rounded one."""
    value = r.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**31:
        raise FieldProblem(name, "is not a whole number from 0 to 2147483647")
    return value


EXTRACTORS: dict[str, Callable[[dict[str, Any]], Extracted]] = {
    "Patient": _patient,
    "Encounter": _encounter,
    "Condition": _condition,
    "Observation": _observation,
    "DiagnosticReport": _diagnostic_report,
    "MedicationRequest": _medication_request,
    "Procedure": _procedure,
    "Immunization": _immunization,
    "AllergyIntolerance": _allergy,
    "ImagingStudy": _imaging_study,
    "Practitioner": _practitioner,
    "Organization": _organization,
}


def extract(resource: dict[str, Any]) -> Extracted:
    """The fields and references of one resource of an imported type; FieldProblem when one is unusable."""
    try:
        return EXTRACTORS[resource["resourceType"]](resource)
    except (TypeError, AttributeError, KeyError) as error:
        # A structure the schema allowed but the importer cannot read: named by type, not by value.
        raise FieldProblem("", f"has a structure the importer cannot read ({type(error).__name__})") from error
