"""What each supported message does to the record, through the interface services of records.

ADT^A01 admit, ADT^A04 register (with a visit), ADT^A08 update, ADT^A03 discharge, ORU^R01 results,
ORM^O01 orders. The patient is found by MRN: the PID-3 identifier of the hospital's assigning
authority (``HL7_ASSIGNING_AUTHORITIES``), through the MRN's blind index. ADT messages register a
patient they do not find; results, orders and discharges for an unknown MRN are errors (AE).

A handler raises ``HL7Error`` (a fixed sentence and the segment and field it is about) for content
it cannot take; the caller rolls the whole message back.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hl7
from django.conf import settings
from django.core.exceptions import ValidationError

from accounts.models import Department
from exchange.hl7.parse import (
    INTERNAL_ERROR,
    REQUIRED_FIELD_MISSING,
    TABLE_VALUE_NOT_FOUND,
    UNKNOWN_KEY,
    UNSUPPORTED_EVENT_CODE,
    HL7Error,
    date,
    refused_fields,
    repetitions,
    segments,
    timestamp,
    value,
)
from records.models import Encounter, Observation, Order, Patient
from records.services import (
    interface_encounter_open,
    interface_encounters_close,
    interface_order_place,
    interface_patient_find,
    interface_patient_upsert,
    interface_result_record,
)
from records.services.orders import DEPARTMENT_FOR_ORDER_KIND


@dataclass(frozen=True)
class Handled:
    """What a message did: the patient it was about and a short fixed note for MSA-3."""

    patient_id: int | None
    note: str


Handler = Callable[[hl7.Message, Any], Handled]

# PID-8 (HL7 table 0001) to the record's sex.
SEX_CODES = {
    "F": Patient.Sex.FEMALE,
    "M": Patient.Sex.MALE,
    "O": Patient.Sex.OTHER,
    "A": Patient.Sex.OTHER,
    "N": Patient.Sex.OTHER,
    "X": Patient.Sex.OTHER,
    "U": Patient.Sex.UNKNOWN,
    "": Patient.Sex.UNKNOWN,
}
# PV1-2 patient class (table 0004) to the kind of encounter; others take the event's default.
PATIENT_CLASSES = {
    "I": Encounter.Kind.INPATIENT,
    "B": Encounter.Kind.INPATIENT,
    "E": Encounter.Kind.EMERGENCY,
    "O": Encounter.Kind.AMBULATORY,
    "R": Encounter.Kind.AMBULATORY,
}
# OBX-11 result status (table 0085): which results become observations, and with what status.
RESULT_STATUSES = {
    "F": Observation.Status.FINAL,
    "C": Observation.Status.AMENDED,
    "P": Observation.Status.PRELIMINARY,
    "R": Observation.Status.PRELIMINARY,
    "S": Observation.Status.PRELIMINARY,
    "": Observation.Status.FINAL,
}
# OBX-2 value types that carry a reference or a document, not a result value (not stored as one).
NON_RESULT_TYPES = frozenset({"RP", "ED", "HD", "AD", "MA", "NA"})
CODED_TYPES = frozenset({"CE", "CWE", "CNE", "CF"})
# OBR-24 diagnostic service sections (table 0074) of imaging; other orders go to the laboratory.
IMAGING_SECTIONS = frozenset({"RAD", "CT", "MR", "US", "NMR", "NMS", "RX", "XRC", "CUS", "VUS", "OUS", "BG"})
IMAGING_WORDS = re.compile(r"\b(CT|MRI?|XR|X-?RAY|ULTRASOUND|US|MAMMO\w*|PET|SCAN|RADIOGRAPH\w*)\b")
PRIORITIES = {"S": Order.Priority.STAT, "A": Order.Priority.URGENT, "R": Order.Priority.ROUTINE}
LOINC_SYSTEMS = frozenset({"LN", "LOINC"})
MRN_MAX_LENGTH = 32


def _pid(message: hl7.Message) -> hl7.Segment:
    found = segments(message, "PID")
    if not found:
        raise HL7Error("The message has no PID segment.", code=REQUIRED_FIELD_MISSING, location="PID")
    return found[0]


def mrn_of(pid: hl7.Segment) -> str:
    """The MRN in PID-3: the identifier of one of our assigning authorities, else the first of type MR."""
    identifiers = []
    for rep in range(1, repetitions(pid, 3) + 1):
        identifier = value(pid, 3, rep, 1)
        if identifier:
            identifiers.append((identifier, value(pid, 3, rep, 4, 1), value(pid, 3, rep, 5).upper()))
    if not identifiers:
        raise HL7Error("PID-3 has no patient identifier.", code=REQUIRED_FIELD_MISSING, location="PID^1^3")
    authorities = list(settings.HL7_ASSIGNING_AUTHORITIES)
    if authorities:
        mrn = next((ident for ident, authority, _ in identifiers if authority in authorities), None)
        if mrn is None:
            raise HL7Error(
                "PID-3 has no identifier from this hospital's assigning authority.",
                code=UNKNOWN_KEY,
                location="PID^1^3",
            )
    else:
        mrn = next((ident for ident, _, kind in identifiers if kind == "MR"), identifiers[0][0])
    if len(mrn) > MRN_MAX_LENGTH:
        raise HL7Error("The MRN in PID-3 is longer than 32 characters.", location="PID^1^3")
    return mrn


def _known_patient(message: hl7.Message, actor: Any) -> int:
    patient_id = interface_patient_find(actor=actor, mrn=mrn_of(_pid(message)))
    if patient_id is None:
        raise HL7Error("No patient is registered with the MRN in PID-3.", code=UNKNOWN_KEY, location="PID^1^3")
    return patient_id


def demographics(pid: hl7.Segment) -> dict[str, Any]:
    """The registration data in PID, checked: a family and a given name, a full birth date."""
    family_name, given_name = value(pid, 5, 1, 1, 1), value(pid, 5, 1, 2)
    if not family_name or not given_name:
        raise HL7Error("PID-5 needs a family name and a given name.", code=REQUIRED_FIELD_MISSING, location="PID^1^5")
    birth_date = date(value(pid, 7), location="PID^1^7")
    if birth_date is None:
        raise HL7Error("PID-7 (date of birth) is missing.", code=REQUIRED_FIELD_MISSING, location="PID^1^7")
    sex = SEX_CODES.get(value(pid, 8).upper())
    if sex is None:
        raise HL7Error(
            "PID-8 (administrative sex) is not a code of table 0001.", code=TABLE_VALUE_NOT_FOUND, location="PID^1^8"
        )
    return {
        "given_name": given_name,
        "family_name": family_name,
        "birth_date": birth_date,
        "sex": sex,
        "address_line": value(pid, 11, 1, 1, 1),
        "city": value(pid, 11, 1, 3),
        "state": value(pid, 11, 1, 4),
        "postal_code": value(pid, 11, 1, 5),
        "phone": value(pid, 13, 1, 1),
    }


def _register(message: hl7.Message, actor: Any) -> tuple[int, bool]:
    pid = _pid(message)
    done = interface_patient_upsert(actor=actor, mrn=mrn_of(pid), **demographics(pid))
    return done.patient_id, done.created


def _visit(message: hl7.Message, actor: Any, patient_id: int, *, default_kind: str) -> bool:
    """Open the encounter PV1 describes; False when the message has no PV1."""
    visits = segments(message, "PV1")
    if not visits:
        return False
    pv1 = visits[0]
    kind = PATIENT_CLASSES.get(value(pv1, 2).upper(), default_kind)
    pv2 = segments(message, "PV2")
    reason = (value(pv2[0], 3, 1, 2) or value(pv2[0], 3, 1, 1)) if pv2 else ""
    starts_at = timestamp(value(pv1, 44), location="PV1^1^44")
    interface_encounter_open(actor=actor, patient_id=patient_id, kind=kind, reason=reason, starts_at=starts_at)
    return True


def adt_admit(message: hl7.Message, actor: Any) -> Handled:
    """A01: register or update the patient, and open the stay (inpatient unless PV1-2 says otherwise)."""
    patient_id, created = _register(message, actor)
    if not _visit(message, actor, patient_id, default_kind=Encounter.Kind.INPATIENT):
        raise HL7Error("An admission (A01) needs a PV1 segment.", code=REQUIRED_FIELD_MISSING, location="PV1")
    return Handled(patient_id, "Patient registered and admitted." if created else "Patient admitted.")


def adt_register(message: hl7.Message, actor: Any) -> Handled:
    """A04: register or update the patient, and open the visit when PV1 is present."""
    patient_id, created = _register(message, actor)
    visit = _visit(message, actor, patient_id, default_kind=Encounter.Kind.AMBULATORY)
    note = "Patient registered." if created else "Registration updated."
    return Handled(patient_id, note + (" Visit opened." if visit else ""))


def adt_update(message: hl7.Message, actor: Any) -> Handled:
    """A08: bring the registration up to date (registers a patient not yet known)."""
    patient_id, created = _register(message, actor)
    return Handled(patient_id, "Patient registered." if created else "Registration updated.")


def adt_discharge(message: hl7.Message, actor: Any) -> Handled:
    """A03: close the known patient's open stays at PV1-45 (or now)."""
    patient_id = _known_patient(message, actor)
    visits = segments(message, "PV1")
    ends_at = timestamp(value(visits[0], 45), location="PV1^1^45") if visits else None
    closed = interface_encounters_close(actor=actor, patient_id=patient_id, ends_at=ends_at)
    return Handled(patient_id, "Stay closed." if closed else "No open stay to close.")


def _result_value(obx: hl7.Segment, value_type: str) -> str:
    values = []
    for rep in range(1, max(repetitions(obx, 5), 1) + 1):
        if value_type == "SN":
            # Structured numeric: comparator, number, separator, number ("^182", "<^5", "^1^:^2").
            text = "".join(value(obx, 5, rep, comp) for comp in range(1, 5))
        elif value_type in CODED_TYPES:
            text = value(obx, 5, rep, 2) or value(obx, 5, rep, 9) or value(obx, 5, rep, 1)
        else:
            text = value(obx, 5, rep, 1)
        if text:
            values.append(text)
    return "; ".join(values)


def oru_results(message: hl7.Message, actor: Any) -> Handled:
    """R01: every OBX with a final, corrected or preliminary value becomes an observation.

    Pending or cancelled results (OBX-11 I, X, D, W), empty values and references or documents
    (RP, ED...) are not results yet and are left out; LOINC codes are kept as the test's code.
    """
    patient_id = _known_patient(message, actor)
    requested_at: datetime.datetime | None = None
    recorded = 0
    number = {"OBR": 0, "OBX": 0}
    for segment in message:
        name = str(segment[0])
        if name not in number:
            continue
        number[name] += 1
        n = number[name]
        if name == "OBR":
            requested_at = timestamp(value(segment, 7), location=f"OBR^{n}^7")
            continue
        status = value(segment, 11).upper()
        value_type = value(segment, 2).upper()
        if status not in RESULT_STATUSES or value_type in NON_RESULT_TYPES:
            continue
        result = _result_value(segment, value_type)
        if not result:
            continue
        code, display, system = value(segment, 3, 1, 1), value(segment, 3, 1, 2), value(segment, 3, 1, 3).upper()
        loinc = code if system in LOINC_SYSTEMS else ""
        if not loinc and value(segment, 3, 1, 6).upper() in LOINC_SYSTEMS:
            loinc = value(segment, 3, 1, 4)
        display = display or value(segment, 3, 1, 9) or code
        if not display:
            raise HL7Error("OBX-3 does not name the observation.", code=REQUIRED_FIELD_MISSING, location=f"OBX^{n}^3")
        effective_at = timestamp(value(segment, 14), location=f"OBX^{n}^14") or requested_at
        try:
            interface_result_record(
                actor=actor,
                patient_id=patient_id,
                display=display,
                value=result,
                unit=value(segment, 6, 1, 1),
                loinc_code=loinc,
                status=RESULT_STATUSES[status],
                effective_at=effective_at,
                flag=value(segment, 8).upper(),
                reference_range=value(segment, 7),
            )
        except ValidationError as error:
            raise HL7Error(f"The record refused result {n}: {refused_fields(error)}.", location=f"OBX^{n}^5") from error
        recorded += 1
    return Handled(
        patient_id, f"{recorded} result(s) recorded." if recorded else "No final result values in the message."
    )


def _department(kind: str) -> Department:
    code = settings.HL7_RADIOLOGY_DEPARTMENT if kind == Order.Kind.RADIOLOGY else settings.HL7_LAB_DEPARTMENT
    candidates = Department.objects.filter(kind=DEPARTMENT_FOR_ORDER_KIND[kind])
    if code:
        candidates = candidates.filter(code=code)
    found = list(candidates[:2])
    if len(found) != 1:
        raise HL7Error(
            f"No single {kind} department is configured to receive orders.", code=INTERNAL_ERROR, location="OBR"
        )
    return found[0]


def orm_order(message: hl7.Message, actor: Any) -> Handled:
    """O01: each OBR of a new order (ORC-1 NW) is placed on the radiology or laboratory worklist."""
    patient_id = _known_patient(message, actor)
    orcs = segments(message, "ORC")
    control = value(orcs[0], 1).upper() if orcs else "NW"
    if control not in ("NW", ""):
        raise HL7Error(
            "Only new orders (ORC-1 NW) are accepted.", ack_code="AR", code=UNSUPPORTED_EVENT_CODE, location="ORC^1^1"
        )
    ordered_at = timestamp(value(orcs[0], 9), location="ORC^1^9") if orcs else None
    requests = segments(message, "OBR")
    if not requests:
        raise HL7Error("An order needs an OBR segment.", code=REQUIRED_FIELD_MISSING, location="OBR")
    for n, obr in enumerate(requests, start=1):
        code, description = value(obr, 4, 1, 1), value(obr, 4, 1, 2)
        description = description or code
        if not description:
            raise HL7Error("OBR-4 does not name what is ordered.", code=REQUIRED_FIELD_MISSING, location=f"OBR^{n}^4")
        imaging = value(obr, 24).upper() in IMAGING_SECTIONS or IMAGING_WORDS.search(description.upper())
        kind = Order.Kind.RADIOLOGY if imaging else Order.Kind.LAB
        priority = PRIORITIES.get(
            (value(obr, 5) or (value(orcs[0], 7, 1, 6) if orcs else "")).upper()[:1], Order.Priority.ROUTINE
        )
        interface_order_place(
            actor=actor,
            patient_id=patient_id,
            kind=kind,
            department=_department(kind),
            description=description,
            code=code,
            priority=priority,
            ordered_at=ordered_at,
        )
    return Handled(patient_id, f"{len(requests)} order(s) placed.")


HANDLERS: dict[tuple[str, str], Handler] = {
    ("ADT", "A01"): adt_admit,
    ("ADT", "A03"): adt_discharge,
    ("ADT", "A04"): adt_register,
    ("ADT", "A08"): adt_update,
    ("ORU", "R01"): oru_results,
    ("ORM", "O01"): orm_order,
}
