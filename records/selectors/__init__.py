"""The one read path of the clinical record (DESIGN.md §4).

Every function takes the acting user explicitly and, in this order: checks policy (role and
relationship, records/permissions.py), reports the access with ``patient_data_accessed`` inside a
transaction (a failing receiver raises ``AccessNotRecorded`` and nothing is decrypted), and only
then loads and decrypts what the user may see, returned as frozen dataclasses, never model rows.

Query counts are bounded per page: one query per section shown, staff names joined, lists paged.

Where to look: ``chart`` (the chart, write and download checks), ``observations`` (the chart's
vitals table and trend lines, from rows the chart read returned), ``lists`` (patient lists, the
worklist), ``worklist_history`` (orders a department completed, read-only), ``search`` (finding a
patient by MRN or surname), ``emergency`` (break the glass), ``export`` (a whole record for a
disclosure), ``results`` (critical results for the
physician who ordered them), ``research`` (the audited cohort read of a research dataset build;
imported from its module, not re-exported), ``today`` (the dashboards' work of the day), ``appointments`` (the
schedule), ``access`` (refusals and the access signal shared by
all of them), ``read_models`` (the dataclasses returned). Every public name is importable from
``records.selectors`` itself.
"""

from __future__ import annotations

from records.selectors.access import SUMMARY_FIELDS, AccessNotRecorded, AccessRefused, run_together
from records.selectors.appointments import (
    SCHEDULE_LIMIT,
    AppointmentRow,
    Schedule,
    day_schedule,
    schedule_departments,
)
from records.selectors.chart import D, attachment_for_download, chart_for, check_write_access, patient_own_summary
from records.selectors.compliance import patient_mrns_for_audit
from records.selectors.emergency import (
    ARRIVALS_HOURS,
    ARRIVALS_LIMIT,
    EMERGENCY_CATEGORIES,
    SUMMARY_ENCOUNTERS,
    VITALS_SCAN,
    emergency_candidate,
    emergency_summary,
    my_active_grants,
    recent_arrivals,
)
from records.selectors.export import (
    EXPORT_CATEGORIES,
    EXPORT_PURPOSES,
    ExportRecord,
    ExportRequestInvalid,
    export_access,
    record_for_export,
)
from records.selectors.lists import (
    my_patients,
    order_for_worklist,
    patient_search,
    registration_list,
    worklist,
    worklist_order,
)
from records.selectors.observations import TREND_POINTS, TREND_SCAN, trend_data, vital_trends, vitals_table
from records.selectors.read_models import (
    GRANT_FIELDS,
    LIST_PER_PAGE,
    NOTES_PER_PAGE,
    OBSERVATIONS_PER_PAGE,
    SECTION_LIMIT,
    ActiveGrantRow,
    AdministrationRow,
    AllergyRow,
    ArrivalRow,
    AttachmentRow,
    CareTeamRow,
    Chart,
    CompletedOrderRow,
    ConditionRow,
    CriticalResultRow,
    Demographics,
    EmergencySummary,
    EncounterRow,
    EventRow,
    GrantInfo,
    MedicationRow,
    NoteRow,
    ObservationRow,
    OrderRef,
    OrderRow,
    Page,
    PatientSummary,
    SearchResults,
    SearchRow,
    VitalColumn,
    VitalSet,
    VitalsTable,
    VitalTrend,
    WorklistRow,
)
from records.selectors.results import CRITICAL_DAYS, CRITICAL_SCAN, critical_results_for_orderer
from records.selectors.search import SEARCH_PER_PAGE, SEARCH_SCAN_LIMIT, SEARCH_SORTS, patient_find
from records.selectors.today import (
    DUE_WITHIN,
    NEW_RESULTS_HOURS,
    VITALS_INTERVAL,
    ArrivalTodayRow,
    DueMedicationRow,
    MissingVitalsRow,
    UrgencyCounts,
    WardRow,
    arrivals_today,
    due_medications,
    missing_vitals,
    new_results_for_orderer,
    pending_orders_for_orderer,
    today_bounds,
    ward_list,
    worklist_counts,
)
from records.selectors.worklist_history import completed_order_for_department, completed_orders

__all__ = [
    "ARRIVALS_HOURS",
    "ARRIVALS_LIMIT",
    "CRITICAL_DAYS",
    "CRITICAL_SCAN",
    "DUE_WITHIN",
    "EMERGENCY_CATEGORIES",
    "EXPORT_CATEGORIES",
    "EXPORT_PURPOSES",
    "GRANT_FIELDS",
    "LIST_PER_PAGE",
    "NEW_RESULTS_HOURS",
    "NOTES_PER_PAGE",
    "OBSERVATIONS_PER_PAGE",
    "SCHEDULE_LIMIT",
    "SEARCH_PER_PAGE",
    "SEARCH_SCAN_LIMIT",
    "SEARCH_SORTS",
    "SECTION_LIMIT",
    "SUMMARY_ENCOUNTERS",
    "SUMMARY_FIELDS",
    "TREND_POINTS",
    "TREND_SCAN",
    "VITALS_INTERVAL",
    "VITALS_SCAN",
    "AccessNotRecorded",
    "AccessRefused",
    "ActiveGrantRow",
    "AdministrationRow",
    "AllergyRow",
    "AppointmentRow",
    "ArrivalRow",
    "ArrivalTodayRow",
    "AttachmentRow",
    "CareTeamRow",
    "Chart",
    "CompletedOrderRow",
    "ConditionRow",
    "CriticalResultRow",
    "D",
    "Demographics",
    "DueMedicationRow",
    "EmergencySummary",
    "EncounterRow",
    "EventRow",
    "ExportRecord",
    "ExportRequestInvalid",
    "GrantInfo",
    "MedicationRow",
    "MissingVitalsRow",
    "NoteRow",
    "ObservationRow",
    "OrderRef",
    "OrderRow",
    "Page",
    "PatientSummary",
    "Schedule",
    "SearchResults",
    "SearchRow",
    "UrgencyCounts",
    "VitalColumn",
    "VitalSet",
    "VitalTrend",
    "VitalsTable",
    "WardRow",
    "WorklistRow",
    "arrivals_today",
    "attachment_for_download",
    "chart_for",
    "check_write_access",
    "completed_order_for_department",
    "completed_orders",
    "critical_results_for_orderer",
    "day_schedule",
    "due_medications",
    "emergency_candidate",
    "emergency_summary",
    "export_access",
    "missing_vitals",
    "my_active_grants",
    "my_patients",
    "new_results_for_orderer",
    "order_for_worklist",
    "patient_find",
    "patient_mrns_for_audit",
    "patient_own_summary",
    "patient_search",
    "pending_orders_for_orderer",
    "recent_arrivals",
    "record_for_export",
    "registration_list",
    "run_together",
    "schedule_departments",
    "today_bounds",
    "trend_data",
    "vital_trends",
    "vitals_table",
    "ward_list",
    "worklist",
    "worklist_counts",
    "worklist_order",
]
