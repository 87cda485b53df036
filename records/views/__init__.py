"""Clinical workflows of each role. Thin: form -> capability check -> selector or service -> render.

Views never query clinical models: reads go through records/selectors/ (audited), writes through
records/services/. AccessRefused, RecordNotFound and AccessNotRecorded raised there become 403/404/503
pages in records/middleware.py. Views that *show* clinical data carry ``@step_up_required``; views that
only add data do not.

By workflow: ``lists`` (patient lists, search), ``registration`` (front desk), ``appointments``
(the schedule, booking, check-in), ``chart`` (physicians
and nurses; the patient's own record), ``worklist`` (radiology and laboratory); ``base`` holds the
data-entry shape they share. Break the glass is in records/views_breakglass.py.
"""

from __future__ import annotations

from records.views.appointments import appointment_cancel, appointment_check_in, appointment_new, schedule
from records.views.chart import (
    C,
    administer,
    allergy_new,
    chart,
    chart_context,
    condition_new,
    my_record,
    note_amend,
    note_new,
    order_cancel,
    order_form,
    order_new,
    prescription_new,
    vitals_new,
)
from records.views.lists import my_patients, registrations, search
from records.views.registration import (
    admit,
    assign,
    discharge,
    edit_demographics,
    register,
    registration_detail,
    unassign,
)
from records.views.worklist import (
    attachment_download,
    order_complete,
    order_detail,
    order_report,
    order_result,
    order_upload,
    worklist,
    worklist_completed,
)

__all__ = [
    "C",
    "administer",
    "admit",
    "allergy_new",
    "appointment_cancel",
    "appointment_check_in",
    "appointment_new",
    "assign",
    "attachment_download",
    "chart",
    "chart_context",
    "condition_new",
    "discharge",
    "edit_demographics",
    "my_patients",
    "my_record",
    "note_amend",
    "note_new",
    "order_cancel",
    "order_complete",
    "order_detail",
    "order_form",
    "order_new",
    "order_report",
    "order_result",
    "order_upload",
    "prescription_new",
    "register",
    "registration_detail",
    "registrations",
    "schedule",
    "search",
    "unassign",
    "vitals_new",
    "worklist",
    "worklist_completed",
]
