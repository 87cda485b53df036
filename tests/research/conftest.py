"""A small clinical population for the research workflow: registered, with encounters, conditions,
observations and medications, every identifier filled in (so a leak would show in the files)."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import pytest

from records.models import Encounter, Patient
from records.services import (
    condition_record,
    encounter_admit,
    medication_prescribe,
    observation_record,
    patient_register,
)
from research.models import DatasetRequest
from research.services import request_decide, request_submit

AS_OF = datetime.date(2026, 12, 6)


def make_patient(
    n: int, *, sex: str = "female", code: str = "E11.9", age: int = 42, zip_code: str = "02139"
) -> Patient:
    birth = datetime.date(AS_OF.year - age, 3, 1) - datetime.timedelta(days=n)
    patient = patient_register(
        actor=None,
        mrn=f"MRN{700000 + n}",
        given_name=f"Zelda{n}",
        family_name=f"Quixote{n}",
        birth_date=birth,
        sex=sex,
        address_line=f"{n} Elm Street",
        city="Cambridge",
        postal_code=zip_code,
        state="MA",
        phone=f"617-555-{n:04d}",
        email=f"zelda{n}@example.org",
        national_id=f"123-45-{n:04d}",
        emergency_contact_name=f"Ignatius{n} Reilly",
        emergency_contact_phone=f"617-555-9{n:03d}",
        allow_possible_duplicate=True,
    )
    starts = datetime.datetime(2024, 5, 1 + n % 27, 9, 30, tzinfo=datetime.UTC)
    encounter_admit(
        actor=None, patient_id=patient.pk, kind=Encounter.Kind.AMBULATORY, department=None, starts_at=starts
    )
    condition_record(actor=None, patient_id=patient.pk, display="Diabetes", code=code, onset_date=birth)
    observation_record(
        actor=None,
        patient_id=patient.pk,
        category="laboratory",
        display="HbA1c",
        value=f"{6 + n % 3}.{n % 10}",
        unit="%",
        loinc_code="4548-4",
        effective_at=starts,
    )
    medication_prescribe(actor=None, patient_id=patient.pk, display="Metformin", dosage="500 mg", code="860975")
    return patient


@pytest.fixture
def population(db: None) -> Callable[..., list[Patient]]:
    def make(count: int, start: int = 0, **kwargs: Any) -> list[Patient]:
        return [make_patient(start + n, **kwargs) for n in range(count)]

    return make


@pytest.fixture
def submit(researcher: Any) -> Callable[..., DatasetRequest]:
    def make(**kwargs: Any) -> DatasetRequest:
        values: dict[str, Any] = {
            "title": "Diabetes control",
            "purpose": "HbA1c and metformin in adults with type 2 diabetes.",
            "tier": "safe_harbor",
            "fields": ["demographics_generalised", "conditions", "observations", "medications"],
            "condition_codes": ["E11.9"],
        }
        values.update(kwargs)
        return request_submit(actor=researcher, **values)

    return make


@pytest.fixture
def approved(submit: Callable[..., DatasetRequest], compliance: Any) -> Callable[..., DatasetRequest]:
    def make(**kwargs: Any) -> DatasetRequest:
        request = submit(**kwargs)
        return request_decide(actor=compliance, request_id=request.pk, approve=True, note="IRB 2026-14")

    return make
