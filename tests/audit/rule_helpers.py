"""Scenes for the anomaly-rule tests: a patient on a nurse's ward (access explained by "ward" only)."""

from __future__ import annotations

import datetime
from typing import Any

from django.utils import timezone

from audit.models import Alert, AlertSubject
from records.models import Encounter, Patient
from records.selectors import chart_for
from records.services import encounter_admit
from tests.factories import PatientFactory


def on_ward(nurse: Any, **patient: Any) -> Patient:
    """A patient admitted to ``nurse``'s ward, with nobody from here on their care team."""
    p = PatientFactory(**patient)
    encounter_admit(
        actor=None,
        patient_id=p.pk,
        kind=Encounter.Kind.INPATIENT,
        department=nurse.department,
        starts_at=timezone.now() - datetime.timedelta(hours=2),
    )
    return p


def open_chart(actor: Any, patient: Patient) -> Any:
    return chart_for(actor=actor, patient_id=patient.pk)


def rules_raised(patient: Patient | None = None) -> list[str]:
    alerts = Alert.objects.all()
    if patient is not None:
        alerts = alerts.filter(patient_id=patient.pk)
    return sorted(alerts.values_list("rule", flat=True))


def subjects() -> set[tuple[str, str, int]]:
    return set(AlertSubject.objects.values_list("rule", "kind", "object_id"))
