"""Break the glass (DESIGN.md §8): the emergency summary, finding the patient, and the user's grants."""

from __future__ import annotations

import datetime
from typing import Any

from django.db.models import Max
from django.utils import timezone

from accounts.roles import Capability, DataCategory, has_capability
from records.models import Allergy, BreakGlassGrant, Condition, Encounter, Medication, Observation, Patient
from records.permissions import AccessDecision, active_grants, chart_access
from records.selectors.access import (
    SUMMARY_FIELDS,
    AccessRefused,
    _decision_grant,
    _demographics,
    _grant_detail,
    _name,
    _record,
    _summary,
    _with_staff,
)
from records.selectors.read_models import (
    GRANT_FIELDS,
    LIST_PER_PAGE,
    SECTION_LIMIT,
    ActiveGrantRow,
    AllergyRow,
    ArrivalRow,
    ConditionRow,
    EmergencySummary,
    EncounterRow,
    MedicationRow,
    ObservationRow,
    PatientSummary,
    _grant_info,
)

D = DataCategory


EMERGENCY_CATEGORIES = frozenset(
    {D.DEMOGRAPHICS, D.ALLERGIES, D.MEDICATIONS, D.CONDITIONS, D.OBSERVATIONS, D.ENCOUNTERS}
)
# Recent arrivals: patients whose encounter started within this many hours (one shift and then some).
ARRIVALS_HOURS = 24
ARRIVALS_LIMIT = LIST_PER_PAGE
# The newest vital-sign rows read for "last vitals": enough for a full set (pulse, pressure, SpO2,
# temperature, rate, ...) taken a few times, bounded so the summary stays one small query.
VITALS_SCAN = 40
SUMMARY_ENCOUNTERS = 5


def emergency_summary(*, actor: Any, patient_id: int) -> EmergencySummary:
    """The emergency summary of one patient. Raises AccessRefused or AccessNotRecorded.

    Open to any clinical relationship except an order (a department working from an order sees only
    what the order needs); under a grant, the access event carries the grant id. Six small queries
    besides the policy and the event, whatever the size of the record.
    """
    decision = chart_access(actor, patient_id, with_patient=True)
    if not decision.allowed:
        raise AccessRefused(decision)
    if decision.explanation == "order":
        raise AccessRefused(AccessDecision.not_found())
    visible = decision.categories & EMERGENCY_CATEGORIES
    _record(
        actor=actor,
        patient_ids=[patient_id],
        category=sorted(visible),
        action="view",
        purpose="emergency" if decision.grant_id is not None else "treatment",
        explanation=decision.explanation,
        detail={**(_grant_detail(decision) or {}), "view": "emergency_summary"},
    )
    # The policy may have read the patient's row already (sealed: opened only now).
    patient = decision.patient or Patient.objects.get(pk=patient_id)
    sections: dict[str, Any] = {}
    if D.ALLERGIES in visible:
        sections["allergies"] = tuple(
            AllergyRow(a.pk, a.substance, a.reaction, a.severity, a.recorded_at)
            for a in Allergy.objects.filter(patient_id=patient_id).order_by("-recorded_at")[:SECTION_LIMIT]
        )
    if D.MEDICATIONS in visible:
        sections["medications"] = tuple(
            MedicationRow(
                m.pk, m.display, m.code, m.dosage, m.get_status_display(), _name(m.prescribed_by), m.prescribed_at
            )
            for m in _with_staff(
                Medication.objects.filter(patient_id=patient_id, status=Medication.Status.ACTIVE), "prescribed_by"
            ).order_by("-prescribed_at")[:SECTION_LIMIT]
        )
    if D.CONDITIONS in visible:
        # The clinical status is encrypted, so the active ones are picked after decryption.
        sections["conditions"] = tuple(
            ConditionRow(c.pk, c.display, c.code, c.clinical_status, c.onset_date, c.abatement_date)
            for c in Condition.objects.filter(patient_id=patient_id).order_by("-recorded_at")[:SECTION_LIMIT]
            if c.clinical_status == "active" and c.abatement_date is None
        )
    if D.OBSERVATIONS in visible:
        latest: dict[str, ObservationRow] = {}
        for o in _with_staff(
            Observation.objects.filter(patient_id=patient_id, category=Observation.Category.VITAL_SIGNS),
            "recorded_by",
        ).order_by("-effective_at", "-id")[:VITALS_SCAN]:
            # Newest first: the first row of each measurement is its last value.
            latest.setdefault(
                o.loinc_code or o.display,
                ObservationRow(
                    o.pk,
                    o.get_category_display(),
                    o.display,
                    o.value,
                    o.unit,
                    o.loinc_code,
                    o.effective_at,
                    _name(o.recorded_by),
                    o.order_id,
                ),
            )
        sections["vitals"] = tuple(latest.values())
    if D.ENCOUNTERS in visible:
        sections["encounters"] = tuple(
            EncounterRow(
                e.pk,
                e.get_kind_display(),
                e.get_status_display(),
                e.department.name if e.department else "",
                _name(e.attending),
                e.starts_at,
                e.ends_at,
                e.reason,
                e.type_display,
            )
            for e in _with_staff(Encounter.objects.filter(patient_id=patient_id), "attending")
            .select_related("department")
            .order_by("-starts_at")[:SUMMARY_ENCOUNTERS]
        )
    return EmergencySummary(
        patient=_demographics(patient),
        explanation=decision.explanation,
        categories=visible,
        grant=_decision_grant(decision),
        **sections,
    )


def _require_break_glass(actor: Any) -> None:
    if not has_capability(actor, Capability.BREAK_GLASS):
        raise AccessRefused(AccessDecision.forbidden("role_cannot_break_glass"))


def emergency_candidate(*, actor: Any, patient_id: int) -> PatientSummary:
    """Who a break-the-glass request is about (name, birth date, MRN: demographics only), so the
    user can confirm the person before stating a reason. Recorded as a demographics view; 404 for
    an unknown id."""
    _require_break_glass(actor)
    if not Patient.objects.filter(pk=patient_id).exists():
        raise AccessRefused(AccessDecision.not_found())
    _record(
        actor=actor,
        patient_ids=[patient_id],
        category=D.DEMOGRAPHICS,
        action="view",
        purpose="emergency",
        explanation="break_glass_request",
        detail={"view": "break_glass_request"},
    )
    return _summary(Patient.objects.only(*SUMMARY_FIELDS).get(pk=patient_id))


def recent_arrivals(*, actor: Any) -> list[ArrivalRow]:
    """Patients with an encounter that started in the last ARRIVALS_HOURS, newest first: demographics
    and the time only, for finding someone to break the glass for. Recorded as a list event."""
    _require_break_glass(actor)
    since = timezone.now() - datetime.timedelta(hours=ARRIVALS_HOURS)
    arrivals = list(
        Encounter.objects.filter(starts_at__gte=since, starts_at__lte=timezone.now())
        .values("patient_id")
        .annotate(arrived_at=Max("starts_at"))
        .order_by("-arrived_at", "-patient_id")[:ARRIVALS_LIMIT]
    )
    ids = [row["patient_id"] for row in arrivals]
    _record(
        actor=actor,
        patient_ids=ids,
        category=D.DEMOGRAPHICS,
        action="list",
        purpose="emergency",
        detail={"list": "recent_arrivals"},
    )
    patients = {p.pk: _summary(p) for p in Patient.objects.filter(pk__in=ids).only(*SUMMARY_FIELDS)}
    return [ArrivalRow(patients[row["patient_id"]], row["arrived_at"]) for row in arrivals]


def my_active_grants(*, actor: Any) -> list[ActiveGrantRow]:
    """The user's own grants in force now, soonest to expire first, with who they are for (recorded
    as a list event with the grant ids)."""
    _require_break_glass(actor)
    grants = list(
        BreakGlassGrant.objects.filter(active_grants(timezone.now()), user_id=actor.pk)
        .only(*GRANT_FIELDS)
        .order_by("expires_at")[:LIST_PER_PAGE]
    )
    ids = sorted({g.patient_id for g in grants})
    _record(
        actor=actor,
        patient_ids=ids,
        category=D.DEMOGRAPHICS,
        action="list",
        purpose="emergency",
        explanation="break_glass",
        detail={"list": "active_grants", "grant_ids": [g.pk for g in grants]},
    )
    patients = {p.pk: _summary(p) for p in Patient.objects.filter(pk__in=ids).only(*SUMMARY_FIELDS)}
    return [ActiveGrantRow(_grant_info(g), patients[g.patient_id]) for g in grants]
