"""The one write path of the clinical record (DESIGN.md §4).

Every function takes the acting user explicitly, validates with ``full_clean()`` inside a
transaction, and sends ``patient_data_changed`` in that same transaction, so that a failing audit
receiver undoes the change.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.db import transaction

from records.crypto import family_name_index, mrn_index, name_dob_index
from records.models import CareAssignment, Patient
from records.signals import patient_data_changed

DEMOGRAPHIC_FIELDS = (
    "mrn",
    "given_name",
    "family_name",
    "birth_date",
    "sex",
    "address_line",
    "city",
    "postal_code",
    "phone",
    "email",
)


@transaction.atomic
def patient_register(
    *,
    actor: Any,
    mrn: str,
    given_name: str,
    family_name: str,
    birth_date: datetime.date,
    sex: str,
    address_line: str = "",
    city: str = "",
    postal_code: str = "",
    phone: str = "",
    email: str = "",
) -> Patient:
    """Register a new patient, computing the blind indexes. ``actor`` is None only for system jobs."""
    patient = Patient(
        mrn=mrn.strip(),
        given_name=given_name.strip(),
        family_name=family_name.strip(),
        birth_date=birth_date,
        sex=sex,
        address_line=address_line,
        city=city,
        postal_code=postal_code,
        phone=phone,
        email=email,
        mrn_index=mrn_index(mrn),
        name_dob_index=name_dob_index(family_name, birth_date),
        family_name_index=family_name_index(family_name),
    )
    patient.full_clean()
    patient.save()
    patient_data_changed.send(
        sender=Patient,
        actor=actor,
        patient_id=patient.pk,
        category="demographics",
        action="create",
        fields=DEMOGRAPHIC_FIELDS,
    )
    return patient


@transaction.atomic
def care_assignment_create(
    *,
    actor: Any,
    staff: Any,
    patient: Patient,
    team_role: str,
    starts_at: datetime.datetime,
    ends_at: datetime.datetime | None = None,
) -> CareAssignment:
    """Put ``staff`` on ``patient``'s care team from ``starts_at`` (until ``ends_at``, if given)."""
    assignment = CareAssignment(
        staff=staff, patient=patient, team_role=team_role, starts_at=starts_at, ends_at=ends_at, assigned_by=actor
    )
    assignment.full_clean()
    assignment.save()
    patient_data_changed.send(
        sender=CareAssignment,
        actor=actor,
        patient_id=patient.pk,
        category="care_team",
        action="create",
        fields=("staff", "team_role", "starts_at", "ends_at"),
    )
    return assignment
