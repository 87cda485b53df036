"""The one read path of the clinical record (DESIGN.md §4).

Every function takes the acting user explicitly and, in this order: checks policy (role and
relationship, records/permissions.py), reports the access with ``patient_data_accessed`` inside a
transaction (a failing receiver raises ``AccessNotRecorded`` and nothing is decrypted), and only
then loads and decrypts what the user may see, returned as frozen dataclasses, never model rows.

Query counts are bounded per page: one query per section shown, staff names joined, lists paged.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Case, Max, Q, QuerySet, When
from django.utils import timezone

from accounts.roles import Capability, DataCategory, has_capability, policy_for
from records.crypto import mrn_index, name_dob_index
from records.models import (
    Allergy,
    Attachment,
    BreakGlassGrant,
    CareAssignment,
    ClinicalNote,
    Condition,
    Encounter,
    Immunization,
    Medication,
    Observation,
    Order,
    Patient,
    Procedure,
)
from records.permissions import (
    ORDER_KIND_FOR_ROLE,
    AccessDecision,
    active_assignments,
    active_grants,
    chart_access,
    open_encounters,
    order_access,
)
from records.signals import patient_data_accessed

logger = logging.getLogger(__name__)

OBSERVATIONS_PER_PAGE = 50
NOTES_PER_PAGE = 20
LIST_PER_PAGE = 25
# Short sections (problems, allergies, medications, images) show the newest this many; the long ones
# (observations, notes) are paged.
SECTION_LIMIT = 200

D = DataCategory


class AccessRefused(Exception):
    """The policy said no. ``status`` is 403 (role too weak) or 404 (no relationship: no existence leak)."""

    def __init__(self, decision: AccessDecision) -> None:
        super().__init__(decision.explanation)
        self.status = decision.status
        self.explanation = decision.explanation


class AccessNotRecorded(Exception):
    """The audit trail could not record the access, so nothing is shown (fail closed)."""


# --- Read models ----------------------------------------------------------------------------------


def _name(user: Any) -> str:
    if user is None:
        return ""
    return user.get_full_name() or user.get_username()


def _with_staff(queryset: QuerySet[Any], *relations: str) -> QuerySet[Any]:
    """Join the staff members a section names, loading only their names (not whole user rows)."""
    names = [
        f"{relation}__{field}" for relation in relations for field in ("first_name", "last_name", "username", "role")
    ]
    own = [f.name for f in queryset.model._meta.concrete_fields]
    return queryset.select_related(*relations).only(*own, *names)


@dataclass(frozen=True)
class PatientSummary:
    id: int
    mrn: str
    given_name: str
    family_name: str
    birth_date: datetime.date
    sex: str
    is_confidential: bool

    @property
    def display_name(self) -> str:
        return f"{self.family_name.upper()}, {self.given_name}"

    @property
    def age(self) -> int:
        today = timezone.localdate()
        born = self.birth_date
        return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


@dataclass(frozen=True)
class Demographics(PatientSummary):
    address_line: str
    city: str
    state: str
    postal_code: str
    phone: str
    email: str
    national_id_last4: str
    emergency_contact_name: str
    emergency_contact_phone: str
    deceased_date: datetime.date | None


@dataclass(frozen=True)
class CareTeamRow:
    id: int
    staff_name: str
    staff_role: str
    team_role: str
    starts_at: datetime.datetime


@dataclass(frozen=True)
class EncounterRow:
    id: int
    kind: str
    status: str
    department: str
    attending: str
    starts_at: datetime.datetime
    ends_at: datetime.datetime | None
    reason: str
    type_display: str


@dataclass(frozen=True)
class ConditionRow:
    id: int
    display: str
    code: str
    clinical_status: str
    onset_date: datetime.date | None
    abatement_date: datetime.date | None


@dataclass(frozen=True)
class AllergyRow:
    id: int
    substance: str
    reaction: str
    severity: str
    recorded_at: datetime.datetime


@dataclass(frozen=True)
class MedicationRow:
    id: int
    display: str
    code: str
    dosage: str
    status: str
    prescribed_by: str
    prescribed_at: datetime.datetime


@dataclass(frozen=True)
class ObservationRow:
    id: int
    category: str
    display: str
    value: str
    unit: str
    loinc_code: str
    effective_at: datetime.datetime
    recorded_by: str
    order_id: int | None


@dataclass(frozen=True)
class OrderRow:
    id: int
    patient_id: int
    kind: str
    status: str
    priority: str
    priority_label: str
    description: str
    code: str
    reason: str
    department: str
    ordered_by: str
    ordered_at: datetime.datetime
    completed_at: datetime.datetime | None


@dataclass(frozen=True)
class NoteRow:
    id: int
    kind: str
    author: str
    signed_at: datetime.datetime
    text: str
    amends_id: int | None
    order_id: int | None


@dataclass(frozen=True)
class AttachmentRow:
    id: int
    kind: str
    filename: str
    content_type: str
    description: str
    size: int
    uploaded_by: str
    uploaded_at: datetime.datetime
    order_id: int | None


@dataclass(frozen=True)
class EventRow:
    id: int
    kind: str
    display: str
    at: datetime.datetime


@dataclass(frozen=True)
class Page:
    number: int
    per_page: int
    total: int

    @property
    def num_pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.num_pages


@dataclass(frozen=True)
class GrantInfo:
    """A break-the-glass grant as its holder sees it on the banner: never the free-text explanation."""

    id: int
    patient_id: int
    reason: str
    reason_label: str
    granted_at: datetime.datetime
    expires_at: datetime.datetime

    @property
    def minutes_left(self) -> int:
        return max(0, -(-int((self.expires_at - timezone.now()).total_seconds()) // 60))


GRANT_FIELDS = ("id", "patient_id", "reason", "granted_at", "expires_at")


def _grant_info(g: BreakGlassGrant) -> GrantInfo:
    return GrantInfo(g.pk, g.patient_id, g.reason, g.get_reason_display(), g.granted_at, g.expires_at)


@dataclass(frozen=True)
class Chart:
    """What one person may see of one patient's record, decrypted, for one request."""

    patient: Demographics
    explanation: str
    categories: frozenset[DataCategory]
    care_team: tuple[CareTeamRow, ...] = ()
    encounters: tuple[EncounterRow, ...] = ()
    conditions: tuple[ConditionRow, ...] = ()
    allergies: tuple[AllergyRow, ...] = ()
    medications: tuple[MedicationRow, ...] = ()
    observations: tuple[ObservationRow, ...] = ()
    observations_page: Page = field(default_factory=lambda: Page(1, OBSERVATIONS_PER_PAGE, 0))
    orders: tuple[OrderRow, ...] = ()
    notes: tuple[NoteRow, ...] = ()
    notes_page: Page = field(default_factory=lambda: Page(1, NOTES_PER_PAGE, 0))
    attachments: tuple[AttachmentRow, ...] = ()
    procedures: tuple[EventRow, ...] = ()
    immunizations: tuple[EventRow, ...] = ()
    order_ids: tuple[int, ...] = ()
    # The emergency grant this view is under (explanation "break_glass"), for the banner.
    grant: GrantInfo | None = None

    def shows(self, category: str) -> bool:
        return DataCategory(category) in self.categories


# --- Reporting accesses ---------------------------------------------------------------------------


def _record(
    *,
    actor: Any,
    patient_ids: Sequence[int | None],
    category: str | Sequence[str],
    action: str,
    purpose: str,
    explanation: str = "",
    detail: dict[str, Any] | None = None,
) -> None:
    """Report accesses: one signal for every patient and section shown; a failure becomes AccessNotRecorded."""
    categories = (category,) if isinstance(category, str) else tuple(category)
    if not patient_ids:
        return
    try:
        with transaction.atomic():
            patient_data_accessed.send(
                sender=Patient,
                actor=actor,
                patient_id=patient_ids[0] if len(patient_ids) == 1 else None,
                patient_ids=tuple(patient_ids),
                category=categories[0],
                categories=categories,
                action=action,
                purpose=purpose,
                explanation=explanation,
                detail=detail or {},
            )
    except Exception as exc:
        logger.exception("Access could not be recorded; nothing was shown (actor=%s)", getattr(actor, "pk", None))
        raise AccessNotRecorded from exc


def _page_number(raw: object) -> int:
    try:
        return max(1, int(str(raw)))
    except (TypeError, ValueError):
        return 1


def _summary(p: Patient) -> PatientSummary:
    return PatientSummary(p.pk, p.mrn, p.given_name, p.family_name, p.birth_date, p.sex, p.is_confidential)


# row_uid: the encrypted fields are opened with it; without it each patient would cost one more query.
SUMMARY_FIELDS = ("id", "row_uid", "mrn", "given_name", "family_name", "birth_date", "sex", "is_confidential")


def _demographics(p: Patient) -> Demographics:
    return Demographics(
        p.pk,
        p.mrn,
        p.given_name,
        p.family_name,
        p.birth_date,
        p.sex,
        p.is_confidential,
        address_line=p.address_line,
        city=p.city,
        state=p.state,
        postal_code=p.postal_code,
        phone=p.phone,
        email=p.email,
        national_id_last4=p.national_id[-4:] if p.national_id else "",
        emergency_contact_name=p.emergency_contact_name,
        emergency_contact_phone=p.emergency_contact_phone,
        deceased_date=p.deceased_date,
    )


# --- The chart ------------------------------------------------------------------------------------


def chart_for(
    *,
    actor: Any,
    patient_id: int,
    purpose: str = "treatment",
    categories: Iterable[DataCategory] | None = None,
    observations_page: object = 1,
    notes_page: object = 1,
) -> Chart:
    """A patient's record as ``actor`` may see it. Raises AccessRefused or AccessNotRecorded."""
    decision = chart_access(actor, patient_id)
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
    # Only now is anything decrypted.
    patient = Patient.objects.get(pk=patient_id)
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
            .order_by("-starts_at")[:50]
        )
    if D.CONDITIONS in visible:
        sections["conditions"] = tuple(
            ConditionRow(c.pk, c.display, c.code, c.clinical_status, c.onset_date, c.abatement_date)
            for c in Condition.objects.filter(patient_id=patient_id).order_by("-recorded_at")[:SECTION_LIMIT]
        )
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
            for m in _with_staff(Medication.objects.filter(patient_id=patient_id), "prescribed_by").order_by(
                "status", "-prescribed_at"
            )[:SECTION_LIMIT]
        )
    if D.OBSERVATIONS in visible:
        observations = Observation.objects.filter(patient_id=patient_id)
        if decision.explanation == "order":
            observations = observations.filter(order_id__in=decision.order_ids)
        page = Page(_page_number(observations_page), OBSERVATIONS_PER_PAGE, observations.count())
        page = Page(min(page.number, page.num_pages), page.per_page, page.total)
        start = (page.number - 1) * page.per_page
        sections["observations_page"] = page
        sections["observations"] = tuple(
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
            )
            for o in _with_staff(observations, "recorded_by").order_by("-effective_at", "-id")[
                start : start + page.per_page
            ]
        )
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
        page = Page(_page_number(notes_page), NOTES_PER_PAGE, notes.count())
        page = Page(min(page.number, page.num_pages), page.per_page, page.total)
        start = (page.number - 1) * page.per_page
        sections["notes_page"] = page
        sections["notes"] = tuple(
            NoteRow(n.pk, n.get_kind_display(), _name(n.author), n.signed_at, n.text, n.amends_id, n.order_id)
            for n in _with_staff(notes, "author").order_by("-signed_at", "-id")[start : start + page.per_page]
        )
    if D.IMAGING in visible:
        attachments = Attachment.objects.filter(patient_id=patient_id)
        if decision.explanation == "order":
            attachments = attachments.filter(order_id__in=decision.order_ids)
        sections["attachments"] = tuple(
            AttachmentRow(
                a.pk,
                a.get_kind_display(),
                a.filename,
                a.content_type,
                a.description,
                a.size,
                _name(a.uploaded_by),
                a.uploaded_at,
                a.order_id,
            )
            for a in _with_staff(attachments, "uploaded_by").order_by("-uploaded_at")[:SECTION_LIMIT]
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


def _order_row(o: Order) -> OrderRow:
    return OrderRow(
        o.pk,
        o.patient_id,
        o.get_kind_display(),
        o.status,
        o.priority,
        o.get_priority_display(),
        o.description,
        o.code,
        o.reason,
        o.department.name,
        _name(o.ordered_by),
        o.ordered_at,
        o.completed_at,
    )


# --- Lists and searches ---------------------------------------------------------------------------


def _listed(
    *, actor: Any, queryset: QuerySet[Patient], page: object, action: str, purpose: str, detail: dict[str, Any]
) -> tuple[list[PatientSummary], Page]:
    total = queryset.count()
    current = Page(_page_number(page), LIST_PER_PAGE, total)
    current = Page(min(current.number, current.num_pages), current.per_page, total)
    start = (current.number - 1) * current.per_page
    ids = list(queryset.order_by("id").values_list("id", flat=True)[start : start + current.per_page])
    _record(actor=actor, patient_ids=ids, category=D.DEMOGRAPHICS, action=action, purpose=purpose, detail=detail)
    patients = Patient.objects.filter(pk__in=ids).only(*SUMMARY_FIELDS).order_by("id")
    return [_summary(p) for p in patients], current


def patient_search(
    *,
    actor: Any,
    mrn: str = "",
    family_name: str = "",
    birth_date: datetime.date | None = None,
    purpose: str = "registration",
) -> list[PatientSummary]:
    """Exact search by MRN, or by surname and birth date, through the blind indexes.

    The search itself is recorded (how it searched, how many results, never the terms) and so is
    each patient it showed, so a patient's access report lists searches that found them.
    """
    if not has_capability(actor, Capability.SEARCH_PATIENTS):
        raise AccessRefused(AccessDecision.forbidden("role_cannot_search"))
    if mrn.strip():
        queryset, by = Patient.objects.filter(mrn_index=mrn_index(mrn)), "mrn"
    elif family_name.strip() and birth_date is not None:
        queryset, by = Patient.objects.filter(name_dob_index=name_dob_index(family_name, birth_date)), "name_dob"
    else:
        return []
    ids = list(queryset.order_by("id").values_list("id", flat=True)[:LIST_PER_PAGE])
    _record(
        actor=actor,
        patient_ids=[None],
        category=D.DEMOGRAPHICS,
        action="search",
        purpose=purpose,
        detail={"by": by, "results": len(ids)},
    )
    if ids:
        _record(
            actor=actor,
            patient_ids=ids,
            category=D.DEMOGRAPHICS,
            action="search_result",
            purpose=purpose,
            detail={"by": by},
        )
    return [_summary(p) for p in Patient.objects.filter(pk__in=ids).only(*SUMMARY_FIELDS).order_by("id")]


def my_patients(*, actor: Any, page: object = 1) -> tuple[list[PatientSummary], Page]:
    """The patients a physician or nurse cares for now: care team, attending, and (nurses) their ward."""
    policy = policy_for(actor)
    if policy is None or not has_capability(actor, Capability.VIEW_PATIENT_LIST):
        raise AccessRefused(AccessDecision.forbidden("role_without_patient_list"))
    now = timezone.now()
    relation = Q(pk__in=CareAssignment.objects.filter(active_assignments(now), staff_id=actor.pk).values("patient_id"))
    relation |= Q(pk__in=Encounter.objects.filter(open_encounters(), attending_id=actor.pk).values("patient_id"))
    if policy.chart_access == "care_team_or_ward" and actor.department_id:
        relation |= Q(
            pk__in=Encounter.objects.filter(open_encounters(), department_id=actor.department_id).values("patient_id")
        )
    return _listed(
        actor=actor,
        queryset=Patient.objects.filter(relation),
        page=page,
        action="list",
        purpose="treatment",
        detail={"list": "my_patients"},
    )


def registration_list(*, actor: Any, page: object = 1) -> tuple[list[PatientSummary], Page]:
    """The front desk's list of recently registered patients (demographics only)."""
    if not has_capability(actor, Capability.REGISTER_PATIENT):
        raise AccessRefused(AccessDecision.forbidden("role_cannot_register"))
    recent = Patient.objects.filter(pk__in=Patient.objects.order_by("-id").values("id")[:200])
    return _listed(
        actor=actor,
        queryset=recent,
        page=page,
        action="list",
        purpose="registration",
        detail={"list": "recent_registrations"},
    )


@dataclass(frozen=True)
class WorklistRow:
    order: OrderRow
    patient: PatientSummary


def worklist(*, actor: Any, page: object = 1) -> tuple[list[WorklistRow], Page]:
    """Open radiology or laboratory orders for the user's department, urgent first."""
    policy = policy_for(actor)
    if policy is None or not has_capability(actor, Capability.VIEW_WORKLIST):
        raise AccessRefused(AccessDecision.forbidden("role_without_worklist"))
    orders = Order.objects.filter(
        kind=ORDER_KIND_FOR_ROLE[policy.role], department_id=actor.department_id, status__in=Order.OPEN_STATUSES
    )
    total = orders.count()
    current = Page(_page_number(page), LIST_PER_PAGE, total)
    current = Page(min(current.number, current.num_pages), current.per_page, total)
    start = (current.number - 1) * current.per_page
    urgency = Case(When(priority=Order.Priority.STAT, then=0), When(priority=Order.Priority.URGENT, then=1), default=2)
    rows = list(
        orders.select_related("department", "ordered_by").order_by(urgency, "ordered_at", "id")[
            start : start + current.per_page
        ]
    )
    _record(
        actor=actor,
        patient_ids=sorted({o.patient_id for o in rows}),
        category=D.ORDERS,
        action="list",
        purpose="treatment",
        explanation="order",
        detail={"list": "worklist"},
    )
    patients = {
        p.pk: _summary(p) for p in Patient.objects.filter(pk__in={o.patient_id for o in rows}).only(*SUMMARY_FIELDS)
    }
    return [WorklistRow(_order_row(o), patients[o.patient_id]) for o in rows], current


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


@dataclass(frozen=True)
class OrderRef:
    """An order's identity and routing, without any clinical value (nothing is decrypted)."""

    id: int
    patient_id: int
    kind: str


def worklist_order(*, actor: Any, order_id: int) -> OrderRef:
    """Check that ``order_id`` is an open order of the user's department; raises AccessRefused otherwise."""
    decision, order = order_access(actor, order_id)
    if order is None:
        raise AccessRefused(decision)
    return OrderRef(order.pk, order.patient_id, order.kind)


def order_for_worklist(*, actor: Any, order_id: int) -> tuple[OrderRow, Chart]:
    """One open order of the user's department, with the chart sections that order opens."""
    decision, order = order_access(actor, order_id)
    if order is None:
        raise AccessRefused(decision)
    chart = chart_for(actor=actor, patient_id=order.patient_id, purpose="treatment")
    row = next((o for o in chart.orders if o.id == order_id), None)
    if row is None:  # pragma: no cover - order_access and chart_access agree by construction
        raise AccessRefused(AccessDecision.not_found())
    return row, chart


def attachment_for_download(*, actor: Any, attachment_id: int, purpose: str = "treatment") -> Attachment:
    """An attachment row the user may download; the download itself is recorded as an access."""
    row = Attachment.objects.filter(pk=attachment_id).only("id", "patient_id", "order_id").first()
    if row is None:
        raise AccessRefused(AccessDecision.not_found())
    decision = chart_access(actor, row.patient_id)
    if not decision.allowed or D.IMAGING not in decision.categories:
        raise AccessRefused(decision if not decision.allowed else AccessDecision.not_found())
    if decision.explanation == "order" and row.order_id not in decision.order_ids:
        raise AccessRefused(AccessDecision.not_found())
    _record(
        actor=actor,
        patient_ids=[row.patient_id],
        category=D.IMAGING,
        action="download",
        purpose=purpose,
        explanation=decision.explanation,
        detail={"attachment_id": attachment_id},
    )
    return Attachment.objects.get(pk=attachment_id)


def patient_own_summary(*, actor: Any) -> Chart:
    """A patient's own record, through the same audited path as anyone else's."""
    record = Patient.objects.filter(portal_user_id=getattr(actor, "pk", None)).only("id").first()
    if record is None:
        raise AccessRefused(AccessDecision.not_found())
    return chart_for(actor=actor, patient_id=record.pk, purpose="own_record")


# --- Break the glass (DESIGN.md §8) ---------------------------------------------------------------

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


def _grant_detail(decision: AccessDecision) -> dict[str, Any] | None:
    return {"grant_id": decision.grant_id} if decision.grant_id is not None else None


def _decision_grant(decision: AccessDecision) -> GrantInfo | None:
    if decision.grant_id is None:
        return None
    return _grant_info(BreakGlassGrant.objects.only(*GRANT_FIELDS).get(pk=decision.grant_id))


@dataclass(frozen=True)
class EmergencySummary:
    """What a clinician needs first in an emergency: allergies, active medications, problems, the
    last vitals and recent encounters. Shown before the full chart, under the same audited path."""

    patient: Demographics
    explanation: str
    categories: frozenset[DataCategory]
    grant: GrantInfo | None
    allergies: tuple[AllergyRow, ...] = ()
    medications: tuple[MedicationRow, ...] = ()
    conditions: tuple[ConditionRow, ...] = ()
    vitals: tuple[ObservationRow, ...] = ()
    encounters: tuple[EncounterRow, ...] = ()


def emergency_summary(*, actor: Any, patient_id: int) -> EmergencySummary:
    """The emergency summary of one patient. Raises AccessRefused or AccessNotRecorded.

    Open to any clinical relationship except an order (a department working from an order sees only
    what the order needs); under a grant, the access event carries the grant id. Six small queries
    besides the policy and the event, whatever the size of the record.
    """
    decision = chart_access(actor, patient_id)
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
    patient = Patient.objects.get(pk=patient_id)
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


@dataclass(frozen=True)
class ArrivalRow:
    patient: PatientSummary
    arrived_at: datetime.datetime


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


@dataclass(frozen=True)
class ActiveGrantRow:
    grant: GrantInfo
    patient: PatientSummary


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
