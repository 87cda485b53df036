"""The chart: one patient's record as the actor may see it, and the checks that guard writes and downloads."""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.roles import DataCategory
from records.models import (
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
    _decision_grant,
    _demographics,
    _grant_detail,
    _note_row,
    _observation_row,
    _paged_shaped,
    _record,
    _with_staff,
)
from records.selectors.observations import TREND_SCAN, trend_row, vital_trends
from records.selectors.read_models import (
    NOTES_PER_PAGE,
    OBSERVATIONS_PER_PAGE,
    SECTION_LIMIT,
    AdministrationRow,
    AttachmentRow,
    CareTeamRow,
    Chart,
    EventRow,
)
from records.selectors.sections import (
    ALLERGY_COLUMNS,
    CONDITION_COLUMNS,
    ENCOUNTER_COLUMNS,
    MEDICATION_COLUMNS,
    ORDER_COLUMNS,
    Section,
    allergy_row,
    condition_row,
    encounter_row,
    label,
    medication_row,
    order_row,
    sections_read,
    sections_read_shaped,
    staff,
    staff_name,
)
from records.selectors.worklist_history import EXPLANATION as HISTORY_EXPLANATION
from records.selectors.worklist_history import completed_by_department

D = DataCategory

# How many of each small section a chart shows (the rest: SECTION_LIMIT).
CHART_ENCOUNTERS = 50
CHART_ORDERS = 100
CHART_EVENTS = 100


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
        patients=(decision.patient,) if decision.patient is not None else (),
    )
    # Only now is anything decrypted. The policy may have read the patient's row already (sealed).
    patient = decision.patient or Patient.objects.get(pk=patient_id)
    sections: dict[str, Any] = {"grant": _decision_grant(decision)}

    # The small sections, each with its own filter, order and limit: one query (records/selectors/sections.py).
    def build(patient_id: int, now: datetime.datetime) -> list[Section]:
        return [section for category, section in _small_sections(patient_id, decision, now) if category in visible]

    values: dict[str, Any] = {"patient_id": patient_id, "now": timezone.now()}
    if decision.explanation == "order":  # scoped to the order's rows: a shape per order, not kept
        small = sections_read(build(patient_id, values["now"]))
    else:
        small = sections_read_shaped(("chart", visible), build, values)
    sections.update(_small_rows(small))
    # The paged sections: one query each, compiled once per shape (records/selectors/access.py
    # _paged_shaped), except when scoped to an order's rows (the order's ids are in the query).
    by_order = decision.explanation == "order"
    if D.OBSERVATIONS in visible:
        newest_first = ("-effective_at", "-id")

        def observation_rows(patient_id: int) -> tuple[QuerySet[Observation], QuerySet[Observation] | None]:
            observations = Observation.objects.filter(patient_id=patient_id)
            if by_order:
                observations = observations.filter(order_id__in=decision.order_ids)
            observations = _with_staff(observations, "recorded_by")
            # The trend lines read each vital sign's newest readings: in the same query as the page.
            scan = observations.filter(category=Observation.Category.VITAL_SIGNS).order_by(*newest_first)
            return observations, scan[:TREND_SCAN] if trends else None

        page, rows, scanned = _paged_shaped(
            None if by_order else ("chart observations", trends),
            observation_rows,
            {"patient_id": patient_id},
            newest_first,
            observations_page,
            OBSERVATIONS_PER_PAGE,
        )
        sections["observations_page"] = page
        sections["observations"] = tuple(_observation_row(o) for o in rows)
        if trends:
            # The readings as the trend lines use them, whatever page the table is on: a reading the page
            # does not show is opened only as far as the lines need it (trend_row). A row on both is one
            # model instance, its values opened once.
            sections["vital_trends"] = vital_trends([trend_row(o) for o in scanned])
    if D.NOTES in visible:
        signed = ("-signed_at", "-id")

        def note_rows(patient_id: int) -> tuple[QuerySet[ClinicalNote], None]:
            notes = ClinicalNote.objects.filter(patient_id=patient_id)
            if by_order:
                notes = notes.filter(order_id__in=decision.order_ids)
            return _with_staff(notes, "author"), None

        page, rows, _ = _paged_shaped(
            None if by_order else "chart notes",
            note_rows,
            {"patient_id": patient_id},
            signed,
            notes_page,
            NOTES_PER_PAGE,
        )
        sections["notes_page"] = page
        sections["notes"] = tuple(_note_row(n) for n in rows)
    return Chart(
        patient=_demographics(patient),
        explanation=decision.explanation,
        categories=visible,
        order_ids=decision.order_ids,
        **sections,
    )


def _small_sections(
    patient_id: int, decision: AccessDecision, now: datetime.datetime
) -> list[tuple[DataCategory, Section]]:
    """The chart's small sections (all but the paged observations and notes), by the category that shows them.

    Only the order scope depends on ``decision``; the same sections for any ``patient_id`` and ``now``
    otherwise (``sections_read_shaped`` keeps their SQL)."""
    mine = Q(patient_id=patient_id)
    by_order = decision.explanation == "order"
    order_scope = Q(pk__in=decision.order_ids) if by_order else Q()
    attachment_scope = Q(order_id__in=decision.order_ids) if by_order else Q()
    return [
        (
            D.CARE_TEAM,
            Section(
                "care_team",
                CareAssignment.objects.filter(active_assignments(now), mine),
                ("starts_at",),
                SECTION_LIMIT,
                (*staff("staff"), "staff__role", "team_role", "starts_at"),
            ),
        ),
        (
            D.ENCOUNTERS,
            Section(
                "encounters",
                Encounter.objects.filter(mine),
                ("-starts_at",),
                CHART_ENCOUNTERS,
                ENCOUNTER_COLUMNS,
            ),
        ),
        (
            D.CONDITIONS,
            Section("conditions", Condition.objects.filter(mine), ("-recorded_at",), SECTION_LIMIT, CONDITION_COLUMNS),
        ),
        (
            D.ALLERGIES,
            Section("allergies", Allergy.objects.filter(mine), ("-recorded_at",), SECTION_LIMIT, ALLERGY_COLUMNS),
        ),
        (
            D.MEDICATIONS,
            Section(
                "medications",
                Medication.objects.filter(mine),
                ("status", "-prescribed_at"),
                SECTION_LIMIT,
                MEDICATION_COLUMNS,
            ),
        ),
        (
            D.MEDICATIONS,
            Section(
                "administrations",
                MedicationAdministration.objects.filter(mine),
                ("-administered_at", "-id"),
                SECTION_LIMIT,
                (
                    "medication_id",
                    "medication__display",
                    "dose",
                    "note",
                    *staff("administered_by"),
                    "administered_at",
                ),
            ),
        ),
        (
            D.ORDERS,
            Section("orders", Order.objects.filter(order_scope, mine), ("-ordered_at",), CHART_ORDERS, ORDER_COLUMNS),
        ),
        (
            D.IMAGING,
            Section(
                "attachments",
                Attachment.objects.filter(attachment_scope, mine),
                ("-uploaded_at",),
                SECTION_LIMIT,
                (
                    "kind",
                    "filename",
                    "content_type",
                    "description",
                    "size",
                    *staff("uploaded_by"),
                    "uploaded_at",
                    "order_id",
                ),
            ),
        ),
        (
            D.PROCEDURES,
            Section("procedures", Procedure.objects.filter(mine), ("-performed_at",), CHART_EVENTS, ("display",)),
        ),
        (
            D.IMMUNIZATIONS,
            Section("immunizations", Immunization.objects.filter(mine), ("-occurred_at",), CHART_EVENTS, ("display",)),
        ),
    ]


def _small_rows(found: dict[str, list[dict[str, Any]]]) -> dict[str, tuple[Any, ...]]:
    """The read rows of the small sections that were read (a section not shown is left out)."""
    builders: dict[str, Any] = {
        "care_team": lambda r: CareTeamRow(
            r["id"],
            staff_name(r, "staff"),
            r["staff__role"],
            label(CareAssignment, "team_role", r),
            r["starts_at"],
        ),
        "encounters": encounter_row,
        "conditions": condition_row,
        "allergies": allergy_row,
        "medications": medication_row,
        "administrations": lambda r: AdministrationRow(
            r["id"],
            r["medication_id"],
            r["medication__display"],
            r["dose"],
            r["note"],
            staff_name(r, "administered_by"),
            r["administered_at"],
        ),
        "orders": order_row,
        "attachments": lambda r: AttachmentRow(
            r["id"],
            label(Attachment, "kind", r),
            r["filename"],
            r["content_type"],
            r["description"],
            r["size"],
            staff_name(r, "uploaded_by"),
            r["uploaded_at"],
            r["order_id"],
        ),
        "procedures": lambda r: EventRow(r["id"], "procedure", r["display"], r["performed_at"]),
        "immunizations": lambda r: EventRow(r["id"], "immunization", r["display"], r["occurred_at"]),
    }
    return {name: tuple(builders[name](r) for r in rows) for name, rows in found.items()}


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
