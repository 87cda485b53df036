"""A patient's whole record for export to another provider or the patient (a disclosure, DESIGN.md §9).

``record_for_export`` takes the steps of every read (records/selectors/access.py): the policy, then,
in one transaction, the access event listing every section returned and the disclosure event naming
the recipient and purpose (``disclosure_made``), the anomaly rules (run by the audit receivers), and
only then the decryption of the rows. If either event cannot be written nothing is read.

Unpaged, since a record is exported whole, but each section is one query (no query per row); a
recipient's read may ask for a page of one section or of several in a row (``record_for_recipient(
page=...)``: the partner API's searches and ``$everything``), paged by the database, so only the page
is decrypted. Observation components imported from FHIR (a blood pressure's systolic and diastolic
values) are rows of their own pointing to their panel (``Observation.panel``); they are given back to their panel here (``_components``) so
the export carries them as components again.
"""

from __future__ import annotations

import datetime
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import F, Q

from accounts.roles import Capability, DataCategory, has_capability
from records.models import (
    Allergy,
    Condition,
    DiagnosticReport,
    Encounter,
    ImagingStudy,
    Immunization,
    Medication,
    Observation,
    Patient,
    Procedure,
)
from records.permissions import AccessDecision, chart_access
from records.selectors.access import AccessNotRecorded, AccessRefused, _record
from records.signals import disclosure_made

D = DataCategory

# The sections an export holds: the record as FHIR R4 knows it (exchange/fhir/export.py).
EXPORT_CATEGORIES = frozenset(
    {
        D.DEMOGRAPHICS,
        D.ENCOUNTERS,
        D.CONDITIONS,
        D.OBSERVATIONS,
        D.MEDICATIONS,
        D.PROCEDURES,
        D.IMMUNIZATIONS,
        D.ALLERGIES,
        D.IMAGING,
    }
)
# Why a record leaves the hospital; the accounting of disclosures lists it with the recipient.
EXPORT_PURPOSES: tuple[tuple[str, str], ...] = (
    ("continuity_of_care", "Continuity of care (another provider)"),
    ("patient_request", "At the patient's request"),
    ("payment", "Payment or insurance"),
    ("legal", "Required by law"),
)
RECIPIENT_MAX_LENGTH = 200
# The disclosure event's category: the whole record (its sections are in the access event).
DISCLOSURE_CATEGORY = "record"


class ExportRequestInvalid(ValueError):
    """The purpose is not one of EXPORT_PURPOSES, or the recipient is missing or too long."""


@dataclass(frozen=True)
class ExportPatient:
    uid: uuid.UUID
    mrn: str
    given_name: str
    family_name: str
    birth_date: datetime.date
    sex: str
    address_line: str
    city: str
    state: str
    postal_code: str
    phone: str
    national_id: str
    deceased_date: datetime.date | None


@dataclass(frozen=True)
class ExportEncounter:
    uid: uuid.UUID
    kind: str
    status: str
    starts_at: datetime.datetime
    ends_at: datetime.datetime | None
    reason: str
    type_code: str
    type_display: str
    location: str


@dataclass(frozen=True)
class ExportCondition:
    uid: uuid.UUID
    encounter: uuid.UUID | None
    code: str
    display: str
    clinical_status: str
    onset_date: datetime.date | None
    abatement_date: datetime.date | None
    recorded_at: datetime.datetime


@dataclass(frozen=True)
class ExportComponent:
    loinc_code: str
    display: str
    value: str
    unit: str


@dataclass(frozen=True)
class ExportObservation:
    uid: uuid.UUID
    encounter: uuid.UUID | None
    category: str
    status: str
    loinc_code: str
    display: str
    value: str
    unit: str
    effective_at: datetime.datetime
    components: tuple[ExportComponent, ...] = ()


@dataclass(frozen=True)
class ExportReport:
    uid: uuid.UUID
    encounter: uuid.UUID | None
    status: str
    code: str
    display: str
    conclusion: str
    effective_at: datetime.datetime
    result_count: int = 0


@dataclass(frozen=True)
class ExportMedication:
    uid: uuid.UUID
    encounter: uuid.UUID | None
    status: str
    code: str
    display: str
    dosage: str
    prescribed_at: datetime.datetime


@dataclass(frozen=True)
class ExportEvent:
    """A procedure (``at``: performed) or an immunization (``at``: given)."""

    uid: uuid.UUID
    encounter: uuid.UUID | None
    code: str
    display: str
    at: datetime.datetime


@dataclass(frozen=True)
class ExportAllergy:
    uid: uuid.UUID
    substance: str
    code: str
    reaction: str
    severity: str
    recorded_at: datetime.datetime


@dataclass(frozen=True)
class ExportImagingStudy:
    uid: uuid.UUID
    encounter: uuid.UUID | None
    status: str
    study_uid: str
    modality: str
    body_site: str
    description: str
    series_count: int
    instance_count: int
    started_at: datetime.datetime


@dataclass(frozen=True)
class ExportRecord:
    """Everything an export holds, decrypted, with each row's stable identity (``uid``: its row_uid).

    ``patient`` is None when the demographics section was not read (a page of results): the
    patient's identity (``patient_uid``) is still there for the references, nothing of theirs decrypted."""

    patient_uid: uuid.UUID
    patient: ExportPatient | None
    encounters: tuple[ExportEncounter, ...]
    conditions: tuple[ExportCondition, ...]
    observations: tuple[ExportObservation, ...]
    reports: tuple[ExportReport, ...]
    medications: tuple[ExportMedication, ...]
    procedures: tuple[ExportEvent, ...]
    immunizations: tuple[ExportEvent, ...]
    allergies: tuple[ExportAllergy, ...]
    imaging_studies: tuple[ExportImagingStudy, ...]
    categories: frozenset[DataCategory]
    # A page's read (record_for_recipient(page=...)): how many resources the sections read hold in all
    # (``categories`` is then the sections with resources on the page).
    total: int | None = None


@dataclass(frozen=True)
class Page:
    """A window of resources, in PAGE_ORDER and each section's own order: ``count`` from ``offset``."""

    offset: int
    count: int

    def __post_init__(self) -> None:
        if self.offset < 0 or self.count < 1:
            raise ValueError("A page starts at 0 or later and holds at least one resource.")


# The sections a recipient's read may page, in the order a page over several runs through them, each
# by the rows of one kind (the patient is one resource; a page of the observations section holds
# observations only, without the diagnostic reports of the whole record's section).
PAGED_SECTIONS: dict[DataCategory, type] = {
    D.DEMOGRAPHICS: Patient,
    D.OBSERVATIONS: Observation,
    D.CONDITIONS: Condition,
    D.MEDICATIONS: Medication,
    D.ALLERGIES: Allergy,
}


def export_access(actor: Any, patient_id: int) -> AccessDecision:
    """May ``actor`` export this patient's record? The chart's answer, narrowed.

    403 for a role without ``export_record``; the chart's own 403/404 otherwise (no relationship:
    404, no existence leak); 403 when only a break-the-glass grant opens the chart (a grant is for
    emergency care, not for sending the record elsewhere) or when the role sees less than the record.
    """
    if not has_capability(actor, Capability.EXPORT_RECORD):
        return AccessDecision.forbidden("role_may_not_export")
    decision = chart_access(actor, patient_id, with_patient=True)
    if not decision.allowed:
        return decision
    if decision.grant_id is not None:
        return AccessDecision.forbidden("break_glass_does_not_allow_export")
    if not decision.categories >= EXPORT_CATEGORIES:
        return AccessDecision.forbidden("role_sees_part_of_the_record")
    return decision


def _check_request(purpose: str, recipient: str) -> str:
    if purpose not in dict(EXPORT_PURPOSES):
        raise ExportRequestInvalid("purpose is not one of the export purposes")
    recipient = recipient.strip()
    if not recipient or len(recipient) > RECIPIENT_MAX_LENGTH:
        raise ExportRequestInvalid(f"recipient is required (at most {RECIPIENT_MAX_LENGTH} characters)")
    return recipient


def record_for_export(*, actor: Any, patient_id: int, purpose: str, recipient: str) -> ExportRecord:
    """The whole record of a patient for export. Raises AccessRefused, AccessNotRecorded or ExportRequestInvalid.

    The access event (every section returned) and the disclosure event (recipient, purpose) are written
    in one transaction before anything is decrypted; if either fails, nothing is read.
    """
    recipient = _check_request(purpose, recipient)
    decision = export_access(actor, patient_id)
    if not decision.allowed:
        raise AccessRefused(decision)
    with transaction.atomic():
        _record(
            actor=actor,
            patient_ids=[patient_id],
            category=sorted(EXPORT_CATEGORIES),
            action="export",
            purpose=purpose,
            explanation=decision.explanation,
        )
        try:
            with transaction.atomic(savepoint=False):
                disclosure_made.send(
                    sender=Patient,
                    actor=actor,
                    patient_id=patient_id,
                    recipient=recipient,
                    category=DISCLOSURE_CATEGORY,
                    purpose=purpose,
                )
        except Exception as exc:
            raise AccessNotRecorded from exc
        # Only now is anything decrypted. The policy read the patient's row already (still sealed).
        patient = decision.patient or Patient.objects.get(pk=patient_id)
        return _read(patient)


# The access event's action and explanation of a system recipient's read (the partner API).
RECIPIENT_READ_ACTION = "partner_read"
RECIPIENT_EXPLANATION = "data_sharing"


def record_for_recipient(
    *,
    patient_id: int,
    sections: frozenset[DataCategory],
    recipient: str,
    purpose: str,
    may_see: Callable[[int], bool],
    detail: dict[str, Any] | None = None,
    page: Page | None = None,
) -> ExportRecord:
    """Sections of a patient's record read for a recipient outside the hospital by a system (the
    partner API, exchange/api/), not by a person. Raises AccessRefused (404), AccessNotRecorded.

    ``may_see`` is the recipient's policy (a data sharing that covers the patient), asked here first,
    inside the read path; then, in one transaction, an access event naming the sections read
    (action ``partner_read``, no acting user, ``detail`` naming the recipient's registration) and a
    disclosure to ``recipient`` for ``purpose``; only then is anything decrypted. If either event
    cannot be written, nothing is read.

    ``page``: sections of PAGED_SECTIONS only, taken in its order as one list of resources, of which
    only the page's rows are read and decrypted; the record's ``total`` says how many resources the
    sections hold in all, and its ``categories`` which sections have resources on the page.
    """
    if not sections or not sections <= EXPORT_CATEGORIES:
        raise ValueError("A recipient's read names sections of the exported record.")
    if page is not None and not sections <= PAGED_SECTIONS.keys():
        raise ValueError("A page is of sections that can be paged.")
    recipient = recipient.strip()
    if not recipient or len(recipient) > RECIPIENT_MAX_LENGTH:
        raise ValueError("A disclosure names its recipient.")
    if not may_see(patient_id):
        raise AccessRefused(AccessDecision.not_found())
    with transaction.atomic():
        # A page names the sections it holds (counted first, nothing read), or those asked if it holds
        # none (an offset past the end: the call is recorded all the same).
        paging = _windows(patient_id, sections, page) if page is not None else None
        named = (frozenset(paging[0]) or sections) if paging is not None else sections
        _record(
            actor=None,
            patient_ids=[patient_id],
            category=sorted(named),
            action=RECIPIENT_READ_ACTION,
            purpose=purpose,
            explanation=RECIPIENT_EXPLANATION,
            detail=detail,
        )
        try:
            with transaction.atomic(savepoint=False):
                disclosure_made.send(
                    sender=Patient,
                    actor=None,
                    patient_id=patient_id,
                    recipient=recipient,
                    category=DISCLOSURE_CATEGORY,
                    purpose=purpose,
                )
        except Exception as exc:
            raise AccessNotRecorded from exc
        return _read(Patient.objects.get(pk=patient_id), sections, paging)


_Paging = tuple[dict[DataCategory, Page], int]


def _read(
    p: Patient, sections: frozenset[DataCategory] = EXPORT_CATEGORIES, paging: _Paging | None = None
) -> ExportRecord:
    """Decrypt the sections named (all by default; a section left out is read by no query and comes
    back empty). Encounters' identities are read for the references even when their section is not.
    With ``paging`` (``_windows``: where a page falls in each section of PAGED_SECTIONS, and the
    total), only the rows of each section on the page are read."""
    windows, total = paging if paging is not None else ({}, None)
    if paging is not None:
        sections = frozenset(windows)
    if D.ENCOUNTERS in sections:
        encounters = list(Encounter.objects.filter(patient_id=p.pk).order_by("starts_at", "pk"))
        by_encounter = {e.pk: e.row_uid for e in encounters}
    else:
        encounters = []
        by_encounter = dict(Encounter.objects.filter(patient_id=p.pk).values_list("pk", "row_uid"))

    def enc(row: Any) -> uuid.UUID | None:
        return by_encounter.get(row.encounter_id) if row.encounter_id is not None else None

    def rows(model: Any, category: DataCategory, *order: str) -> list[Any]:
        if category not in sections or (paging is not None and model is not PAGED_SECTIONS[category]):
            return []
        if paging is None:
            return list(model.objects.filter(patient_id=p.pk).order_by(*order))
        window = windows[category]
        query = _resources(model, p.pk).order_by(*order)[window.offset : window.offset + window.count]
        found = list(query)
        panels = [o.pk for o in found if model is Observation and o.panel_id is None]
        if panels:
            # The components come with their panels (of this patient only, whatever a link says).
            found += Observation.objects.filter(patient_id=p.pk, panel__in=panels).order_by("pk")
        return found

    observations = rows(Observation, D.OBSERVATIONS, "pk")
    return ExportRecord(
        patient_uid=p.row_uid,
        patient=None
        if D.DEMOGRAPHICS not in sections
        else ExportPatient(
            p.row_uid,
            p.mrn,
            p.given_name,
            p.family_name,
            p.birth_date,
            p.sex,
            p.address_line,
            p.city,
            p.state,
            p.postal_code,
            p.phone,
            p.national_id,
            p.deceased_date,
        ),
        encounters=tuple(
            ExportEncounter(
                e.row_uid, e.kind, e.status, e.starts_at, e.ends_at, e.reason, e.type_code, e.type_display, e.location
            )
            for e in encounters
        ),
        conditions=tuple(
            ExportCondition(
                c.row_uid,
                enc(c),
                c.code,
                c.display,
                c.clinical_status,
                c.onset_date,
                c.abatement_date,
                c.recorded_at,
            )
            for c in rows(Condition, D.CONDITIONS, "recorded_at", "pk")
        ),
        observations=_components(observations, enc),
        reports=tuple(
            ExportReport(r.row_uid, enc(r), r.status, r.code, r.display, r.conclusion, r.effective_at, r.result_count)
            for r in rows(DiagnosticReport, D.OBSERVATIONS, "effective_at", "pk")
        ),
        medications=tuple(
            ExportMedication(m.row_uid, enc(m), m.status, m.code, m.display, m.dosage, m.prescribed_at)
            for m in rows(Medication, D.MEDICATIONS, "prescribed_at", "pk")
        ),
        procedures=tuple(
            ExportEvent(r.row_uid, enc(r), r.code, r.display, r.performed_at)
            for r in rows(Procedure, D.PROCEDURES, "performed_at", "pk")
        ),
        immunizations=tuple(
            ExportEvent(i.row_uid, enc(i), i.code, i.display, i.occurred_at)
            for i in rows(Immunization, D.IMMUNIZATIONS, "occurred_at", "pk")
        ),
        allergies=tuple(
            ExportAllergy(a.row_uid, a.substance, a.code or "", a.reaction, a.severity, a.recorded_at)
            for a in rows(Allergy, D.ALLERGIES, "recorded_at", "pk")
        ),
        imaging_studies=tuple(
            ExportImagingStudy(
                s.row_uid,
                enc(s),
                s.status,
                s.study_uid,
                s.modality,
                s.body_site,
                s.description,
                s.series_count,
                s.instance_count,
                s.started_at,
            )
            for s in rows(ImagingStudy, D.IMAGING, "started_at", "pk")
        ),
        categories=sections,
        total=total,
    )


def _resources(model: Any, patient_pk: int) -> Any:
    """A patient's rows of ``model`` that are resources of their own: not an observation's components.

    A component is a row whose panel is a row of the same patient that is no component itself; any
    other link (another patient's row, the row itself, a cycle, two levels: none written by this
    application, so set straight in the database) leaves the row a resource of its own, shown, never
    dropped. ``_components`` applies the same rule to rows in memory."""
    query = model.objects.filter(patient_id=patient_pk)
    if model is not Observation:
        return query
    return query.filter(Q(panel__isnull=True) | ~Q(panel__patient_id=F("patient_id")) | Q(panel__panel__isnull=False))


def _windows(patient_pk: int, sections: frozenset[DataCategory], page: Page) -> tuple[dict[DataCategory, Page], int]:
    """Where ``page`` falls in each section (those it misses are left out) and how many resources the
    sections hold in all: a count per section (the patient is one), no row read."""
    windows: dict[DataCategory, Page] = {}
    start = 0
    end = page.offset + page.count
    for category, model in PAGED_SECTIONS.items():
        if category not in sections:
            continue
        size = 1 if model is Patient else _resources(model, patient_pk).count()
        low, high = max(page.offset, start), min(end, start + size)
        if low < high:
            windows[category] = Page(low - start, high - low)
        start += size
    return windows, start


def _components(rows: list[Observation], enc: Any) -> tuple[ExportObservation, ...]:
    """Observations in key order (one patient's), each panel with its components given back: the rows
    that point to it, when it is no component itself (``_resources``' rule)."""
    by_pk = {row.pk: row for row in rows}
    parts: dict[int, list[Observation]] = defaultdict(list)
    for row in rows:
        panel = by_pk.get(row.panel_id) if row.panel_id is not None else None
        if panel is not None and panel.panel_id is None:
            parts[panel.pk].append(row)
    taken = {row.pk for group in parts.values() for row in group}
    return tuple(
        ExportObservation(
            o.row_uid,
            enc(o),
            o.category,
            o.status,
            o.loinc_code,
            o.display,
            o.value,
            o.unit,
            o.effective_at,
            tuple(ExportComponent(c.loinc_code, c.display, c.value, c.unit) for c in parts.get(o.pk, ())),
        )
        for o in rows
        if o.pk not in taken
    )
