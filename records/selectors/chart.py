"""The chart: one patient's record as the actor may see it, and the checks that guard writes and downloads."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import Q
from django.utils import timezone

from accounts.roles import DataCategory
from records.models import (
    FREQUENCY_LABELS,
    Allergy,
    Attachment,
    CareAssignment,
    ClinicalNote,
    Condition,
    Encounter,
    Immunization,
    Medication,
    MedicationAdministration,
    Observation,
    Order,
    Patient,
    Procedure,
)
from records.permissions import AccessDecision, active_assignments, chart_access
from records.selectors.access import (
    AccessRefused,
    _attachment_row,
    _decision_grant,
    _demographics,
    _display,
    _grant_detail,
    _name,
    _note_row,
    _observation_row,
    _order_row,
    _paged,
    _record,
    _with_staff,
)
from records.selectors.observations import TREND_SCAN, vital_trends
from records.selectors.read_models import (
    NOTES_PER_PAGE,
    OBSERVATIONS_PER_PAGE,
    SECTION_LIMIT,
    AdministrationRow,
    AllergyRow,
    CareTeamRow,
    Chart,
    ConditionRow,
    EncounterRow,
    EventRow,
    MedicationRow,
)
from records.selectors.worklist_history import EXPLANATION as HISTORY_EXPLANATION
from records.selectors.worklist_history import completed_by_department

D = DataCategory


def chart_for(
    *,
    actor: Any,
    patient_id: int,
    purpose: str = "treatment",
    categories: Iterable[DataCategory] | None = None,
    observations_page: object = 1,
    notes_page: object = 1,
    trends: bool = False,
) -> Chart:
    """A patient's record as ``actor`` may see it. Raises AccessRefused or AccessNotRecorded.

    ``trends``: also each vital sign's newest readings for the chart's trend lines (one more bounded
    query, under the same recorded access).
    """
    decision = chart_access(actor, patient_id, with_patient=True)
    if not decision.allowed:
        raise AccessRefused(decision)
    wanted = frozenset(categories) if categories is not None else decision.categories
    visible = decision.categories & (wanted | {D.DEMOGRAPHICS})
    _record(
        actor=actor,
        patient_ids=[patient_id],
        category=sorted(visible),
        action="view",
        purpose=purpose,
        explanation=decision.explanation,
        detail=_grant_detail(decision),
    )
    # Only now is anything decrypted. The policy may have read the patient's row already (sealed).
    patient = decision.patient or Patient.objects.get(pk=patient_id)
    sections: dict[str, Any] = {"grant": _decision_grant(decision)}
    order_scope = Q(pk__in=decision.order_ids) if decision.explanation == "order" else Q()
    if D.CARE_TEAM in visible:
        sections["care_team"] = tuple(
            CareTeamRow(a.pk, _name(a.staff), a.staff.role, a.get_team_role_display(), a.starts_at)
            for a in _with_staff(
                CareAssignment.objects.filter(active_assignments(timezone.now()), patient_id=patient_id), "staff"
            ).order_by("starts_at")
        )
    if D.ENCOUNTERS in visible:
        sections["encounters"] = tuple(
            EncounterRow(
                e.pk,
                _display(e, "kind"),
                _display(e, "status"),
                e.department.name if e.department else "",
                _name(e.attending),
                e.starts_at,
                e.ends_at,
                e.reason,
                e.type_display,
            )
            for e in _with_staff(Encounter.objects.filter(patient_id=patient_id), "attending")
            .select_related("department")
            .order_by("-starts_at")[:50]
        )
    if D.CONDITIONS in visible:
        sections["conditions"] = tuple(
            ConditionRow(c.pk, c.display, c.code, c.clinical_status, c.onset_date, c.abatement_date)
            for c in Condition.objects.filter(patient_id=patient_id).order_by("-recorded_at")[:SECTION_LIMIT]
        )
    if D.ALLERGIES in visible:
        sections["allergies"] = tuple(
            AllergyRow(a.pk, a.substance, a.reaction, a.severity, a.recorded_at, a.code or "")
            for a in Allergy.objects.filter(patient_id=patient_id).order_by("-recorded_at")[:SECTION_LIMIT]
        )
    if D.MEDICATIONS in visible:
        sections["medications"] = tuple(
            MedicationRow(
                m.pk,
                m.display,
                m.code,
                m.dosage,
                _display(m, "status"),
                _name(m.prescribed_by),
                m.prescribed_at,
                m.allergy_override_reason or "",
                FREQUENCY_LABELS.get(m.frequency or "", ""),
            )
            for m in _with_staff(Medication.objects.filter(patient_id=patient_id), "prescribed_by").order_by(
                "status", "-prescribed_at"
            )[:SECTION_LIMIT]
        )
        # The medication administration record: doses given, newest first (one query, names joined).
        sections["administrations"] = tuple(
            AdministrationRow(
                g.pk,
                g.medication_id,
                g.medication.display,
                g.dose,
                g.note,
                _name(g.administered_by),
                g.administered_at,
            )
            for g in _with_staff(MedicationAdministration.objects.filter(patient_id=patient_id), "administered_by")
            .select_related("medication")
            .only(
                *(f.name for f in MedicationAdministration._meta.concrete_fields),
                "administered_by__first_name",
                "administered_by__last_name",
                "administered_by__username",
                "administered_by__role",
                "medication__id",
                "medication__row_uid",
                "medication__display",
            )
            .order_by("-administered_at", "-id")[:SECTION_LIMIT]
        )
    if D.OBSERVATIONS in visible:
        observations = Observation.objects.filter(patient_id=patient_id)
        if decision.explanation == "order":
            observations = observations.filter(order_id__in=decision.order_ids)
        observations = _with_staff(observations, "recorded_by")
        newest_first = ("-effective_at", "-id")
        # The trend lines read each vital sign's newest readings: in the same query as the page.
        scan = observations.filter(category=Observation.Category.VITAL_SIGNS).order_by(*newest_first)[:TREND_SCAN]
        page, rows, scanned = _paged(
            observations, newest_first, observations_page, OBSERVATIONS_PER_PAGE, also=scan if trends else None
        )
        sections["observations_page"] = page
        # A row on the page and in the trend scan is one model instance: build its read row once.
        built = {o.pk: _observation_row(o) for o in (*rows, *scanned)}
        sections["observations"] = tuple(built[o.pk] for o in rows)
        if trends:
            sections["vital_trends"] = vital_trends([built[o.pk] for o in scanned])
    if D.ORDERS in visible:
        sections["orders"] = tuple(
            _order_row(o)
            for o in _with_staff(Order.objects.filter(order_scope, patient_id=patient_id), "ordered_by")
            .select_related("department")
            .order_by("-ordered_at")[:100]
        )
    if D.NOTES in visible:
        notes = ClinicalNote.objects.filter(patient_id=patient_id)
        if decision.explanation == "order":
            notes = notes.filter(order_id__in=decision.order_ids)
        page, rows, _ = _paged(_with_staff(notes, "author"), ("-signed_at", "-id"), notes_page, NOTES_PER_PAGE)
        sections["notes_page"] = page
        sections["notes"] = tuple(_note_row(n) for n in rows)
    if D.IMAGING in visible:
        attachments = Attachment.objects.filter(patient_id=patient_id)
        if decision.explanation == "order":
            attachments = attachments.filter(order_id__in=decision.order_ids)
        sections["attachments"] = tuple(
            _attachment_row(a) for a in _with_staff(attachments, "uploaded_by").order_by("-uploaded_at")[:SECTION_LIMIT]
        )
    if D.PROCEDURES in visible:
        sections["procedures"] = tuple(
            EventRow(p.pk, "procedure", p.display, p.performed_at)
            for p in Procedure.objects.filter(patient_id=patient_id).order_by("-performed_at")[:100]
        )
    if D.IMMUNIZATIONS in visible:
        sections["immunizations"] = tuple(
            EventRow(i.pk, "immunization", i.display, i.occurred_at)
            for i in Immunization.objects.filter(patient_id=patient_id).order_by("-occurred_at")[:100]
        )
    return Chart(
        patient=_demographics(patient),
        explanation=decision.explanation,
        categories=visible,
        order_ids=decision.order_ids,
        **sections,
    )


def check_write_access(*, actor: Any, patient_id: int, category: DataCategory) -> str:
    """Raise AccessRefused unless ``actor`` may add to this patient's ``category``; returns the explanation.

    Data-entry views call it before validating their form, so that a patient one has no relationship
    to gets the same 404 whatever was posted. Nothing is read or decrypted.
    """
    decision = chart_access(actor, patient_id)
    if not decision.allowed:
        raise AccessRefused(decision)
    if category not in decision.categories:
        raise AccessRefused(AccessDecision.not_found())
    return decision.explanation


def attachment_for_download(*, actor: Any, attachment_id: int, purpose: str = "treatment") -> Attachment:
    """An attachment row the user may download; the download itself is recorded as an access."""
    row = Attachment.objects.filter(pk=attachment_id).only("id", "patient_id", "order_id").first()
    if row is None:
        raise AccessRefused(AccessDecision.not_found())
    decision = chart_access(actor, row.patient_id)
    explanation = decision.explanation
    allowed = decision.allowed and D.IMAGING in decision.categories
    if allowed and decision.explanation == "order" and row.order_id not in decision.order_ids:
        allowed = False
    if not allowed and completed_by_department(actor, row.order_id, D.IMAGING):
        # The department's own completed work stays readable to it (records/selectors/worklist_history.py).
        allowed, explanation = True, HISTORY_EXPLANATION
    if not allowed:
        # Always a 404, even for a role that may never see a chart (a 403 there would tell it which
        # attachment ids exist: the URL names no patient, so there is no other 403 to give).
        raise AccessRefused(AccessDecision.not_found())
    _record(
        actor=actor,
        patient_ids=[row.patient_id],
        category=D.IMAGING,
        action="download",
        purpose=purpose,
        explanation=explanation,
        detail={"attachment_id": attachment_id},
    )
    return Attachment.objects.get(pk=attachment_id)


def patient_own_summary(*, actor: Any) -> Chart:
    """A patient's own record, through the same audited path as anyone else's."""
    record = Patient.objects.filter(portal_user_id=getattr(actor, "pk", None)).only("id").first()
    if record is None:
        raise AccessRefused(AccessDecision.not_found())
    return chart_for(actor=actor, patient_id=record.pk, purpose="own_record")
