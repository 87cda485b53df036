"""Synthetic clinical history for the demo hospital (used by ``seed_demo``; never on real data).

Goes through records/services/ with the demo staff as actors, so the demo exercises the same
policy checks and audit signals as the application. Deterministic: a seeded ``random.Random``.
"""

from __future__ import annotations

import datetime
import io
import random
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from accounts.models import Department, User
from records import selectors, services
from records.models import (
    SCHEDULE_HOURS,
    Appointment,
    ClinicalNote,
    Encounter,
    Immunization,
    Medication,
    Observation,
    Order,
    Patient,
    Procedure,
)

VITALS = (
    ("8867-4", "Heart rate", "/min", (58, 110)),
    ("8480-6", "Systolic blood pressure", "mm[Hg]", (100, 165)),
    ("8462-4", "Diastolic blood pressure", "mm[Hg]", (60, 100)),
    ("8310-5", "Body temperature", "Cel", (36.1, 38.9)),
    ("59408-5", "Oxygen saturation", "%", (90, 100)),
)
LABS = (
    ("718-7", "Hemoglobin", "g/dL", (10.5, 17.0)),
    ("2345-7", "Glucose", "mg/dL", (70, 190)),
    ("2160-0", "Creatinine", "mg/dL", (0.5, 1.9)),
    ("6690-2", "Leukocytes", "10*3/uL", (3.5, 14.0)),
)
IMAGING = (("36643-5", "Chest X-ray, 2 views"), ("24627-2", "CT chest"), ("30746-2", "Ultrasound abdomen"))
CONDITIONS = (
    ("38341003", "Hypertension"),
    ("44054006", "Type 2 diabetes mellitus"),
    ("195967001", "Asthma"),
    ("233604007", "Pneumonia"),
    ("49436004", "Atrial fibrillation"),
    ("431855005", "Chronic kidney disease stage 1"),
)
MEDICATIONS = (
    ("314076", "Lisinopril 10 MG Oral Tablet", "1 tablet once daily", Medication.Frequency.DAILY),
    ("860975", "Metformin 500 MG Oral Tablet", "1 tablet twice daily with meals", Medication.Frequency.EVERY_12_HOURS),
    ("745679", "Albuterol inhaler", "2 puffs every 6 hours as needed", Medication.Frequency.AS_NEEDED),
    (
        "308182",
        "Amoxicillin 500 MG Oral Capsule",
        "1 capsule three times daily for 7 days",
        Medication.Frequency.EVERY_8_HOURS,
    ),
)
# What one dose of each prescription above is, as the nurse charts it (by RxNorm code).
DOSES = {
    "314076": "1 tablet (10 mg)",
    "860975": "1 tablet (500 mg)",
    "745679": "2 puffs",
    "308182": "1 capsule (500 mg)",
}
# Past procedures and vaccinations, from the patient's other providers (SNOMED CT, CVX); in this
# product they arrive by import (FHIR or HL7), so the demo writes them through the import service.
PROCEDURES = (
    ("73761001", "Colonoscopy"),
    ("80146002", "Appendectomy"),
    ("38102005", "Cholecystectomy"),
    ("29303009", "Electrocardiographic procedure"),
)
IMMUNIZATIONS = (
    ("140", "Influenza, seasonal, injectable, preservative free"),
    ("113", "Td (adult) preservative free"),
    ("133", "Pneumococcal conjugate PCV 13"),
)
# Today's outpatient clinic: this many appointments from the next free slot, one every SLOT_MINUTES.
APPOINTMENTS_TODAY = 6
SLOT_MINUTES = 20
ALLERGIES = (
    ("Penicillin", "Hives", "moderate"),
    ("Iodinated contrast", "Anaphylaxis", "severe"),
    ("Latex", "Rash", "mild"),
)
NOTES = (
    "Patient seen on morning round. Comfortable at rest, eating and drinking. Plan: continue current treatment, review bloods tomorrow.",
    "Admitted with shortness of breath. Examination: bibasal crackles. Plan: chest X-ray, full blood count, start antibiotics.",
    "Discussed results with patient and family. Questions answered. Plan agreed.",
)


@dataclass
class Counts:
    encounters: int = 0
    observations: int = 0
    orders: int = 0
    notes: int = 0
    images: int = 0
    doses: int = 0
    procedures: int = 0
    immunizations: int = 0


def tiny_png(seed: int) -> bytes:
    """A small grey-scale PNG (64 x 64) standing in for an X-ray, different for every seed."""
    rng = random.Random(seed)  # noqa: S311 - demo pixels, not security
    width = height = 64
    rows = b"".join(b"\x00" + bytes(rng.randrange(40, 220) for _ in range(width)) for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _value(rng: random.Random, bounds: tuple[float, float]) -> str:
    low, high = bounds
    if isinstance(low, int) and isinstance(high, int):
        return str(rng.randint(low, high))
    return f"{rng.uniform(low, high):.1f}"


def seed_clinical(
    *, patients: list[Patient], users: dict[str, User], departments: dict[str, Department], max_bytes: int
) -> Counts:
    """Give every patient with a care team a stay, vitals, results, orders, notes; skip those seeded before."""
    rng = random.Random(20261121)  # noqa: S311 - deterministic demo data
    counts = Counts()
    already = set(Encounter.objects.filter(patient__in=patients, source_id="demo").values_list("patient_id", flat=True))
    physicians = [users["physician"], users["physician2"]]
    nurses = [users["nurse"], users["nurse2"]]
    wards = [departments["ward-medicine"], departments["ward-surgery"]]
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    for index, patient in enumerate(patients):
        # Draw the same random numbers whether or not this patient is seeded, so reruns stay deterministic.
        plan = [rng.random() for _ in range(64)]
        if index % 4 == 3 or patient.pk in already:
            continue
        physician, nurse, ward = physicians[index % 2], nurses[index % 2], wards[index % 2]
        # Rounds every 8 hours from admission until now; the first patient has a long stay (hundreds of values).
        rounds = 60 if index == 0 else 2 + int(plan[7] * 4)
        admitted = now - datetime.timedelta(hours=8 * rounds + int(plan[1] * 12))
        encounter = services.encounter_admit(
            actor=None,
            patient_id=patient.pk,
            kind=Encounter.Kind.INPATIENT,
            department=ward,
            attending=physician,
            reason="Shortness of breath" if plan[2] < 0.5 else "Elective admission",
            starts_at=admitted,
        )
        Encounter.objects.filter(pk=encounter.pk).update(source_id="demo")
        counts.encounters += 1
        code, display = CONDITIONS[int(plan[3] * len(CONDITIONS))]
        services.condition_record(actor=physician, patient_id=patient.pk, display=display, code=code)
        substance = ""
        if plan[4] < 0.3:
            substance, reaction, severity = ALLERGIES[int(plan[5] * len(ALLERGIES))]
            services.allergy_record(
                actor=nurse, patient_id=patient.pk, substance=substance, reaction=reaction, severity=severity
            )
        code, display, dosage, frequency = MEDICATIONS[int(plan[6] * len(MEDICATIONS))]
        if substance == "Penicillin" and display.startswith("Amoxicillin"):
            # The demo prescribes as a careful physician would: no amoxicillin with a penicillin allergy
            # (the allergy check would stop it; records/services/safety.py).
            code, display, dosage, frequency = MEDICATIONS[0]
        medication = services.medication_prescribe(
            actor=physician, patient_id=patient.pk, display=display, dosage=dosage, code=code, frequency=frequency
        )
        # The ward's morning round: most scheduled prescriptions have had today's first dose, the rest
        # show as due on the nurse's dashboard; an inhaler taken as needed, now and then.
        if (frequency in SCHEDULE_HOURS and plan[13] < 0.6) or (frequency not in SCHEDULE_HOURS and plan[13] < 0.3):
            services.medication_administer(
                actor=nurse,
                patient_id=patient.pk,
                medication_id=medication.pk,
                dose=DOSES[code],
                note="" if frequency in SCHEDULE_HOURS else "Wheeze on exertion, settled after the dose.",
            )
            counts.doses += 1
        _history_from_elsewhere(patient, users["front_desk"], plan[14:21], counts)
        for step in range(rounds):
            taken = admitted + datetime.timedelta(hours=8 * step)
            for loinc, name, unit, bounds in VITALS:
                services.observation_record(
                    actor=nurse,
                    patient_id=patient.pk,
                    category=Observation.Category.VITAL_SIGNS,
                    display=name,
                    value=_value(rng, bounds),
                    unit=unit,
                    loinc_code=loinc,
                    effective_at=taken,
                    encounter_id=encounter.pk,
                )
                counts.observations += 1
        services.note_write(
            actor=physician, patient_id=patient.pk, kind=ClinicalNote.Kind.PROGRESS, text=NOTES[index % len(NOTES)]
        )
        counts.notes += 1
        # Laboratory: some resulted and completed, some still open on the lab worklist.
        lab_order = services.order_place(
            actor=physician,
            patient_id=patient.pk,
            kind=Order.Kind.LAB,
            department=departments["lab"],
            description="Full blood count and chemistry",
            code="58410-2",
            priority=Order.Priority.URGENT if plan[8] < 0.2 else Order.Priority.ROUTINE,
        )
        counts.orders += 1
        if plan[9] < 0.7:
            for loinc, name, unit, bounds in LABS:
                services.observation_record(
                    actor=users["lab"],
                    patient_id=patient.pk,
                    category=Observation.Category.LABORATORY,
                    display=name,
                    value=_value(rng, bounds),
                    unit=unit,
                    loinc_code=loinc,
                    order_id=lab_order.pk,
                )
                counts.observations += 1
            services.order_complete(actor=users["lab"], order_id=lab_order.pk)
        # Radiology: a third of the patients have an imaging order; half of those have an image.
        if plan[10] < 0.35:
            code, display = IMAGING[int(plan[11] * len(IMAGING))]
            image_order = services.order_place(
                actor=physician,
                patient_id=patient.pk,
                kind=Order.Kind.RADIOLOGY,
                department=departments["radiology"],
                description=display,
                code=code,
                reason="Query consolidation",
            )
            counts.orders += 1
            if plan[12] < 0.5:
                services.attachment_upload(
                    actor=users["radiology"],
                    order_id=image_order.pk,
                    source=io.BytesIO(tiny_png(patient.pk)),
                    filename=f"image-{image_order.pk}.png",
                    content_type="image/png",
                    description=display,
                    max_bytes=max_bytes,
                )
                services.note_write(
                    actor=users["radiology"],
                    patient_id=patient.pk,
                    kind=ClinicalNote.Kind.RADIOLOGY,
                    text="Report: no acute abnormality. Heart size normal.",
                    order_id=image_order.pk,
                )
                services.order_complete(actor=users["radiology"], order_id=image_order.pk)
                counts.images += 1
    return counts


def _history_from_elsewhere(patient: Patient, desk: User, plan: list[float], counts: Counts) -> None:
    """A past procedure (for some) and vaccinations, as records from the patient's other providers:
    written by the import service, as the front desk's import of a referral letter's FHIR bundle would."""
    today = timezone.now().replace(hour=10, minute=0, second=0, microsecond=0)
    # Several kinds in one call, as a bundle's are (the service's type variable takes one kind at a time).
    entries: list[Any] = []
    if plan[0] < 0.4:
        code, display = PROCEDURES[int(plan[1] * len(PROCEDURES))]
        performed = today - datetime.timedelta(days=200 + int(plan[2] * 3000))
        entries.append(
            Procedure(
                patient_id=patient.pk,
                code=code,
                display=display,
                performed_at=performed,
                source_id=f"demo-procedure-{patient.pk}",
            )
        )
    for index, (code, display) in enumerate(IMMUNIZATIONS):
        # The flu vaccine most had last autumn; a tetanus booster about half; the pneumococcal a few.
        if plan[3 + index] < (0.8, 0.5, 0.25)[index]:
            occurred = today - datetime.timedelta(days=(60, 1500, 900)[index] + int(plan[6] * 90))
            entries.append(
                Immunization(
                    patient_id=patient.pk,
                    code=code,
                    display=display,
                    occurred_at=occurred,
                    source_id=f"demo-immunization-{patient.pk}-{code}",
                )
            )
    if entries:
        services.imported_entries_create(actor=desk, entries=entries)
    counts.procedures += sum(isinstance(entry, Procedure) for entry in entries)
    counts.immunizations += sum(isinstance(entry, Immunization) for entry in entries)


def seed_appointments(*, patients: list[Patient], users: dict[str, User], departments: dict[str, Department]) -> int:
    """Book today's outpatient clinic from the next free slot (none left near midnight) and check the
    first patient in; skipped when today's clinic is booked already. Returns how many were booked."""
    clinic = departments["outpatient"]
    start, end = selectors.today_bounds()
    if Appointment.objects.filter(department=clinic, starts_at__gte=start, starts_at__lt=end).exists():
        return 0
    desk = users["front_desk"]
    now = timezone.now()
    first = now.replace(second=0, microsecond=0) + datetime.timedelta(minutes=SLOT_MINUTES - now.minute % SLOT_MINUTES)
    booked = []
    for index, patient in enumerate(patients[:APPOINTMENTS_TODAY]):
        starts_at = first + datetime.timedelta(minutes=SLOT_MINUTES * index)
        if starts_at >= end:
            break
        booked.append(
            services.appointment_book(
                actor=desk,
                patient_id=patient.pk,
                department_id=clinic.pk,
                starts_at=starts_at,
                duration_minutes=SLOT_MINUTES,
                clinician=users["physician"] if index % 2 == 0 else users["physician2"],
                reason="Follow-up visit" if index % 3 else "New referral",
            )
        )
    if booked:
        services.appointment_check_in(actor=desk, patient_id=booked[0].patient_id, appointment_id=booked[0].pk)
    return len(booked)
