"""Compliance reports on the access trail, and the audit of the audit trail itself.

- ``trail``: who may read and export the trail, and the ``audit_trail`` event every view and export
  writes before anything is served (fail closed);
- ``forms``: the report forms and the MRN lookup through the blind index;
- ``queries``: the access events and break-the-glass grants a report reads;
- ``views``: the per-patient and per-user reports as admin pages and streamed CSV files.

Every name below stays importable from ``audit.reports``.
"""

from __future__ import annotations

from audit.reports.forms import (
    DEFAULT_PERIOD_DAYS,
    MRN_MAX_LENGTH,
    PatientReportForm,
    PeriodForm,
    UserReportForm,
    looks_like_mrn,
    patient_ids_for_mrn,
)
from audit.reports.queries import (
    GrantRow,
    Subject,
    patient_report_events,
    patient_report_grants,
    user_report_events,
    user_report_subject,
)
from audit.reports.trail import (
    AUDIT_TRAIL_CATEGORY,
    COMPLIANCE_PURPOSE,
    check_export,
    check_view,
    day_bounds,
    record_trail_access,
)
from audit.reports.views import (
    PATIENT_REPORT,
    REPORT_CSV_COLUMNS,
    REPORT_PAGE_SIZE,
    USER_REPORT,
    Report,
    access_csv_rows,
    report_export_view,
    report_view,
)

__all__ = [
    "AUDIT_TRAIL_CATEGORY",
    "COMPLIANCE_PURPOSE",
    "DEFAULT_PERIOD_DAYS",
    "MRN_MAX_LENGTH",
    "PATIENT_REPORT",
    "REPORT_CSV_COLUMNS",
    "REPORT_PAGE_SIZE",
    "USER_REPORT",
    "GrantRow",
    "PatientReportForm",
    "PeriodForm",
    "Report",
    "Subject",
    "UserReportForm",
    "access_csv_rows",
    "check_export",
    "check_view",
    "day_bounds",
    "looks_like_mrn",
    "patient_ids_for_mrn",
    "patient_report_events",
    "patient_report_grants",
    "record_trail_access",
    "report_export_view",
    "report_view",
    "user_report_events",
    "user_report_subject",
]
