"""The compliance officers' audit trail in the Django admin (DESIGN.md §6), by what a reader looks for:

- ``base``: what every audit admin shares: read-only, permissions from the role table, validated
  lookups, the audit of each view, the CSV export;
- ``events``: access events (and the two compliance reports), change events, authentication events;
- ``direct_changes``: row changes recorded by the database's triggers, with the sealer's verdict;
- ``alerts``: the anomaly rules' alerts and the break-the-glass grants;
- ``history``: django-auditlog's change history under the same rules.

Importing this package registers every admin (Django's autodiscovery imports ``audit.admin``); the
names below stay importable from ``audit.admin``.
"""

from __future__ import annotations

from audit.admin.alerts import AlertAdmin, AlertSubjectInline, BreakGlassGrantAdmin
from audit.admin.base import NOT_FILTERS, SHORT, AuditTrailAdmin
from audit.admin.direct_changes import DirectChangeAdmin
from audit.admin.events import AccessEventAdmin, AuthEventRecordAdmin, ChangeEventAdmin, PatientEventAdmin
from audit.admin.history import ChangeHistoryAdmin

__all__ = [
    "NOT_FILTERS",
    "SHORT",
    "AccessEventAdmin",
    "AlertAdmin",
    "AlertSubjectInline",
    "AuditTrailAdmin",
    "AuthEventRecordAdmin",
    "BreakGlassGrantAdmin",
    "ChangeEventAdmin",
    "ChangeHistoryAdmin",
    "DirectChangeAdmin",
    "PatientEventAdmin",
]
