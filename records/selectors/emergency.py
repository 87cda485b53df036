"""Break the glass (DESIGN.md §8): the emergency summary, finding the patient, and the user's grants."""

from __future__ import annotations

import datetime
from typing import Any

from django.db.models import Max, Q
from django.utils import timezone

from accounts.roles import Capability, DataCategory, has_capability
from records.models import Allergy, BreakGlassGrant, Condition, Encounter, Medication, Observation, Patient
from records.permissions import AccessDecision, active_grants, chart_access
from records.selectors.access import (
    SUMMARY_FIELDS,
    Access,
    AccessRefused,
    Steps,
    _decision_grant,
    _demographics,
    _grant_detail,
    _record,
    _summary,
    in_steps,
)
from records.selectors.read_models import (
    GRANT_FIELDS,
    LIST_PER_PAGE,
    SECTION_LIMIT,
    ActiveGrantRow,
    AllergyRow,
    ArrivalRow,
    EmergencySummary,
    MedicationRow,
    ObservationRow,
    PatientSummary,
    _grant_info,
)
from records.selectors.sections import (
    CONDITION_COLUMNS,
    ENCOUNTER_COLUMNS,
    Section,
    condition_row,
    encounter_row,
    label,
    sections_read_shaped,
    staff,
    staff_name,
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
    what the order needs); under a grant, the access event carries the grant id. Every section in
    one query besides the policy, the event and the rules, whatever the size of the record.
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
        patients=(decision.patient,) if decision.patient is not None else (),
    )
    # The policy may have read the patient's row already (sealed: opened only now).
    patient = decision.patient or Patient.objects.get(pk=patient_id)

    # Every section in one query (records/selectors/sections.py), each with its own filter, order and limit.
    def build(patient_id: int) -> list[Section]:
        mine = Q(patient_id=patient_id)
        wanted = [
            (
                D.ALLERGIES,
                Section(
                    "allergies",
                    Allergy.objects.filter(mine),
                    ("-recorded_at",),
                    SECTION_LIMIT,
                    ("substance", "reaction", "severity", "recorded_at"),
                ),
            ),
            (
                D.MEDICATIONS,
                Section(
                    "medications",
                    Medication.objects.filter(mine, status=Medication.Status.ACTIVE),
                    ("-prescribed_at",),
                    SECTION_LIMIT,
                    ("display", "code", "dosage", "status", *staff("prescribed_by"), "prescribed_at"),
                ),
            ),
            (
                D.CONDITIONS,
                Section(
                    "conditions", Condition.objects.filter(mine), ("-recorded_at",), SECTION_LIMIT, CONDITION_COLUMNS
                ),
            ),
            (
                D.OBSERVATIONS,
                Section(
                    "vitals",
                    Observation.objects.filter(mine, category=Observation.Category.VITAL_SIGNS),
                    ("-effective_at", "-id"),
                    VITALS_SCAN,
                    (
                        "category",
                        "display",
                        "value",
                        "unit",
                        "loinc_code",
                        "effective_at",
                        *staff("recorded_by"),
                        "order_id",
                    ),
                ),
            ),
            (
                D.ENCOUNTERS,
                Section(
                    "encounters", Encounter.objects.filter(mine), ("-starts_at",), SUMMARY_ENCOUNTERS, ENCOUNTER_COLUMNS
                ),
            ),
        ]
        return [section for category, section in wanted if category in visible]

    # Compiled once per set of visible sections (records/selectors/sections.py sections_read_shaped).
    found = sections_read_shaped(("emergency", visible), build, {"patient_id": patient_id})
    sections: dict[str, Any] = {}
    if "allergies" in found:
        sections["allergies"] = tuple(
            AllergyRow(r["id"], r["substance"], r["reaction"], r["severity"], r["recorded_at"])
            for r in found["allergies"]
        )
    if "medications" in found:
        sections["medications"] = tuple(
            MedicationRow(
                r["id"],
                r["display"],
                r["code"],
                r["dosage"],
                label(Medication, "status", r),
                staff_name(r, "prescribed_by"),
                r["prescribed_at"],
            )
            for r in found["medications"]
        )
    if "conditions" in found:
        # The clinical status is encrypted, so the active ones are picked after decryption.
        sections["conditions"] = tuple(
            condition_row(r)
            for r in found["conditions"]
            if r["clinical_status"] == "active" and r["abatement_date"] is None
        )
    if "vitals" in found:
        latest: dict[str, ObservationRow] = {}
        for r in found["vitals"]:
            latest.setdefault(
                r["loinc_code"] or r["display"],
                ObservationRow(
                    r["id"],
                    label(Observation, "category", r),
                    r["display"],
                    r["value"],
                    r["unit"],
                    r["loinc_code"],
                    r["effective_at"],
                    staff_name(r, "recorded_by"),
                    r["order_id"],
                ),
            )
        sections["vitals"] = tuple(latest.values())
    if "encounters" in found:
        sections["encounters"] = tuple(encounter_row(r) for r in found["encounters"])
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


@in_steps
def recent_arrivals(*, actor: Any) -> Steps[list[ArrivalRow]]:
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
    yield Access(
        actor=actor,
        patient_ids=ids,
        category=D.DEMOGRAPHICS,
        action="list",
        purpose="emergency",
        detail={"list": "recent_arrivals"},
    )
    patients = {p.pk: _summary(p) for p in Patient.objects.filter(pk__in=ids).only(*SUMMARY_FIELDS)}
    return [ArrivalRow(patients[row["patient_id"]], row["arrived_at"]) for row in arrivals]


@in_steps
def my_active_grants(*, actor: Any) -> Steps[list[ActiveGrantRow]]:
    """The user's own grants in force now, soonest to expire first, with who they are for (recorded
    as a list event with the grant ids)."""
    _require_break_glass(actor)
    grants = list(
        BreakGlassGrant.objects.filter(active_grants(timezone.now()), user_id=actor.pk)
        .only(*GRANT_FIELDS)
        .order_by("expires_at")[:LIST_PER_PAGE]
    )
    ids = sorted({g.patient_id for g in grants})
    yield Access(
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
