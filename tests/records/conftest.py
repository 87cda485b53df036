"""A small ward: one patient on the personas' care team / worklists, one that nobody here treats."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import pytest
from django.utils import timezone

from accounts.models import Department, User
from records.models import Encounter, Medication, Order, Patient
from records.services import (
    encounter_admit,
    medication_prescribe,
    order_place,
)
from tests.factories import PatientFactory, assign


@dataclass
class Ward:
    treated: Patient
    other: Patient
    radiology_order: Order
    lab_order: Order
    encounter: Encounter
    medication: Medication


@pytest.fixture
def ward(physician: User, nurse: User, radiology: User, lab: User, patient_user: User) -> Ward:
    treated = PatientFactory(family_name="Treatedsurname", given_name="Tina")
    other = PatientFactory(family_name="Othersurname", given_name="Omar")
    assign(physician, treated)
    assign(nurse, treated, "primary_nurse")
    treated.portal_user = patient_user
    treated.save(update_fields=["portal_user"])
    encounter = encounter_admit(
        actor=None,
        patient_id=treated.pk,
        kind=Encounter.Kind.INPATIENT,
        department=nurse.department,
        attending=physician,
        reason="Chest pain",
        starts_at=timezone.now() - datetime.timedelta(hours=3),
    )
    radiology_order = order_place(
        actor=physician,
        patient_id=treated.pk,
        kind=Order.Kind.RADIOLOGY,
        department=radiology.department,
        description="Chest X-ray",
    )
    lab_order = order_place(
        actor=physician, patient_id=treated.pk, kind=Order.Kind.LAB, department=lab.department, description="Troponin"
    )
    medication = medication_prescribe(
        actor=physician, patient_id=treated.pk, display="Aspirin 75 mg", dosage="Once daily"
    )
    return Ward(treated, other, radiology_order, lab_order, encounter, medication)


@pytest.fixture
def radiology_department(radiology: User) -> Department:
    assert radiology.department is not None
    return radiology.department
