"""Critical results for the physician who ordered them (their dashboard), through the audited read path."""

from __future__ import annotations

import datetime
from typing import Any

from django.db.models import Q
from django.utils import timezone

from accounts.roles import Capability, DataCategory, has_capability, policy_for
from records.models import CareAssignment, Encounter, Observation, Patient
from records.permissions import active_assignments, open_encounters
from records.selectors.access import SUMMARY_FIELDS, Access, Steps, _observation_row, _summary, in_steps
from records.selectors.read_models import CriticalResultRow
from records.terminology import Flag

D = DataCategory

# How far back the dashboard looks: a critical result is called in at once, and the panel is the
# reminder for the days after, not an archive (the chart keeps every result).
CRITICAL_DAYS = 7
# At most this many recent laboratory results are opened to find the critical ones; each is
# decrypted, so the bound keeps the dashboard cheap whatever the physician ordered.
CRITICAL_SCAN = 200


def _cared_for(actor: Any, now: datetime.datetime) -> Q:
    """The patients ``actor`` cares for now (care team or attending), as in ``lists.my_patients``."""
    relation = Q(
        patient_id__in=CareAssignment.objects.filter(active_assignments(now), staff_id=actor.pk).values("patient_id")
    )
    relation |= Q(
        patient_id__in=Encounter.objects.filter(open_encounters(), attending_id=actor.pk).values("patient_id")
    )
    return relation


@in_steps
def critical_results_for_orderer(*, actor: Any, limit: int = 8) -> Steps[list[CriticalResultRow]]:
    """The newest critical (LL/HH) laboratory results of orders ``actor`` placed, for patients they
    still care for (no relationship, no result: the chart's own rule), newest first.

    The patients whose recent results are opened are recorded as one list access (observations)
    before anything is decrypted; nothing is recorded (or opened) when there is nothing to look at.
    """
    if policy_for(actor) is None or not has_capability(actor, Capability.PLACE_ORDER):
        return []
    now = timezone.now()
    candidates = list(
        Observation.objects.filter(
            _cared_for(actor, now),
            order__ordered_by_id=actor.pk,
            category=Observation.Category.LABORATORY,
            effective_at__gte=now - datetime.timedelta(days=CRITICAL_DAYS),
        )
        .order_by("-effective_at", "-id")
        .values_list("pk", "patient_id")[:CRITICAL_SCAN]
    )
    if not candidates:
        return []
    patient_ids = sorted({patient_id for _, patient_id in candidates})
    yield Access(
        actor=actor,
        patient_ids=patient_ids,
        category=(D.DEMOGRAPHICS, D.OBSERVATIONS),
        action="list",
        purpose="treatment",
        detail={"list": "critical_results"},
    )
    # Only now is anything decrypted: the flags first (one query), the rest for the critical ones.
    rows = (
        Observation.objects.filter(pk__in=[pk for pk, _ in candidates])
        .select_related("patient", "recorded_by")
        .only(
            *(f.name for f in Observation._meta.concrete_fields),
            *(f"patient__{name}" for name in SUMMARY_FIELDS),
            *(f"recorded_by__{name}" for name in ("first_name", "last_name", "username", "role")),
        )
        .order_by("-effective_at", "-id")
    )
    critical: list[CriticalResultRow] = []
    for o in rows:
        if (o.interpretation or "") in Flag.CRITICAL:
            patient: Patient = o.patient
            critical.append(CriticalResultRow(_summary(patient), _observation_row(o)))
            if len(critical) >= limit:
                break
    return critical
