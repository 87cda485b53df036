"""The frozen dataclasses the read path returns: what one person may see, decrypted for one request, never model rows."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from django.utils import timezone

from accounts.roles import DataCategory
from records.models import BreakGlassGrant
from records.permissions import GRANT_COLUMNS
from records.terminology import Flag

OBSERVATIONS_PER_PAGE = 50
NOTES_PER_PAGE = 20
LIST_PER_PAGE = 25
# Short sections (problems, allergies, medications, images) show the newest this many; the long ones
# (observations, notes) are paged.
SECTION_LIMIT = 200


@dataclass(frozen=True)
class PatientSummary:
    id: int
    mrn: str
    given_name: str
    family_name: str
    birth_date: datetime.date
    sex: str
    is_confidential: bool
    registered_at: datetime.datetime | None = None

    @property
    def display_name(self) -> str:
        return f"{self.family_name.upper()}, {self.given_name}"

    @property
    def age(self) -> int:
        today = timezone.localdate()
        born = self.birth_date
        return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


@dataclass(frozen=True, kw_only=True)
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
    # RxCUI or allergen class code (records/terminology.py); empty: typed as free text, "uncoded".
    code: str = ""

    @property
    def coded(self) -> bool:
        return bool(self.code)


@dataclass(frozen=True)
class MedicationRow:
    id: int
    display: str
    code: str
    dosage: str
    status: str
    prescribed_by: str
    prescribed_at: datetime.datetime
    # Why an allergy warning was overridden when this was prescribed; empty when none was.
    allergy_override_reason: str = ""
    # How often (Medication.Frequency's label); empty for a prescription without a schedule.
    frequency: str = ""

    @property
    def coded(self) -> bool:
        return bool(self.code)


@dataclass(frozen=True)
class AdministrationRow:
    """A dose given (the medication administration record)."""

    id: int
    medication_id: int
    medication: str
    dose: str
    note: str
    administered_by: str
    administered_at: datetime.datetime


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
    # For numeric tests (records/terminology.py): N, L, H, LL, HH, and the interval it was judged by.
    interpretation: str = ""
    reference_range: str = ""

    @property
    def flag_label(self) -> str:
        """ "high", "critical low"...; empty when normal or not judged."""
        return "" if self.interpretation == Flag.NORMAL else Flag.LABELS.get(self.interpretation, "")

    @property
    def is_critical(self) -> bool:
        return self.interpretation in Flag.CRITICAL


@dataclass(frozen=True)
class VitalColumn:
    """One vital sign of the chart's vitals table: its LOINC code (or name, when imported uncoded)."""

    key: str
    label: str
    unit: str


@dataclass(frozen=True)
class VitalSet:
    """The vital signs recorded at one time by one person: one cell per column, None where not taken."""

    effective_at: datetime.datetime
    recorded_by: str
    cells: tuple[ObservationRow | None, ...]


@dataclass(frozen=True)
class VitalsTable:
    """A page of observations as the chart shows it: vital signs grouped by time, other results apart."""

    columns: tuple[VitalColumn, ...]
    sets: tuple[VitalSet, ...]
    results: tuple[ObservationRow, ...]


@dataclass(frozen=True)
class VitalTrend:
    """One vital sign's newest readings, oldest first, for its trend chart and its text fallback."""

    key: str
    label: str
    unit: str
    readings: tuple[ObservationRow, ...]
    low: float | None = None
    high: float | None = None

    @property
    def latest(self) -> ObservationRow:
        return self.readings[-1]

    @property
    def flagged(self) -> int:
        """How many of the readings were outside the reference interval."""
        return sum(1 for r in self.readings if r.flag_label)


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


# The columns of a grant the banner reads: the ones the policy fetches with its decision.
GRANT_FIELDS = GRANT_COLUMNS


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
    administrations: tuple[AdministrationRow, ...] = ()
    observations: tuple[ObservationRow, ...] = ()
    observations_page: Page = field(default_factory=lambda: Page(1, OBSERVATIONS_PER_PAGE, 0))
    # Each vital sign's newest readings (records/selectors/observations.py), read only when asked for.
    vital_trends: tuple[VitalTrend, ...] = ()
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


@dataclass(frozen=True)
class CriticalResultRow:
    """A critical result of an order the physician placed, for their dashboard."""

    patient: PatientSummary
    result: ObservationRow


@dataclass(frozen=True)
class WorklistRow:
    order: OrderRow
    patient: PatientSummary


@dataclass(frozen=True)
class CompletedOrderRow:
    """An order a department completed, for its history list: who completed it (the time is on the order)."""

    order: OrderRow
    patient: PatientSummary
    completed_by: str


@dataclass(frozen=True)
class OrderRef:
    """An order's identity and routing, without any clinical value (nothing is decrypted)."""

    id: int
    patient_id: int
    kind: str


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


@dataclass(frozen=True)
class ArrivalRow:
    patient: PatientSummary
    arrived_at: datetime.datetime


@dataclass(frozen=True)
class ActiveGrantRow:
    grant: GrantInfo
    patient: PatientSummary


@dataclass(frozen=True)
class SearchRow:
    """One patient a search found, and whether the searcher may open their record now."""

    patient: PatientSummary
    may_open: bool


@dataclass(frozen=True)
class SearchResults:
    """One page of a search. ``too_many``: the terms matched more patients than a search reads, so
    none are shown and the user is asked to narrow it."""

    rows: tuple[SearchRow, ...]
    page: Page
    too_many: bool = False

    @property
    def patients(self) -> list[PatientSummary]:
        return [row.patient for row in self.rows]
