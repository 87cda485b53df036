from __future__ import annotations

from django.urls import path

from records import views, views_breakglass

app_name = "records"

# Which pages show a patient's record, and so ask for a fresh one-time code (accounts.decorators.
# step_up_required). The one table: a name, a birth date or an MRN in a list counts as showing the
# record; a page that only adds to it (a result, a dose, a discharge) does not. Every URL below must
# have a row, and tests/records/test_permission_matrix.py checks each view's decorator and its
# answer to a stale step-up against it.
SHOWS_RECORD: dict[str, bool] = {
    # Lists and search: names, MRNs and birth dates.
    "my_patients": True,
    "search": True,
    "registrations": True,
    "worklist": True,
    "worklist_completed": True,  # the department's completed orders, with names and MRNs
    # Registration: the empty form shows nothing; its result is the registration page (below).
    "register": False,
    "registration_detail": True,
    "edit_demographics": True,  # the form is filled in with the demographics
    "admit": False,
    "discharge": False,
    "assign": False,
    "unassign": False,
    # Appointments: the schedule lists names; booking shows the patient banner; check-in and cancel
    # only change an appointment.
    "schedule": True,
    "appointment_new": True,
    "appointment_check_in": False,
    "appointment_cancel": False,
    # The chart and what adds to it.
    "chart": True,
    "note_new": False,
    "note_amend": False,
    "vitals_new": False,
    "order_form": True,  # the order form under the patient banner
    "order_new": False,
    "order_cancel": False,
    "prescription_new": False,
    "administer": False,
    "condition_new": False,
    "allergy_new": False,
    # Radiology and the laboratory.
    "order_detail": True,
    "order_result": False,
    "order_report": False,
    "order_upload": False,
    "order_complete": False,
    "attachment_download": True,
    # The patient's own record.
    "my_record": True,
    # Break the glass: finding someone shows names and MRNs (arrivals, results, the request page);
    # the grant takes its own fresh code, which counts as the step-up.
    "emergency": True,
    "emergency_find": True,
    "emergency_request": True,
    "emergency_grant": False,
    "emergency_summary": True,
    "emergency_end": False,
}

urlpatterns = [
    path("patients/", views.my_patients, name="my_patients"),
    path("patients/search/", views.search, name="search"),
    path("patients/register/", views.register, name="register"),
    path("patients/registrations/", views.registrations, name="registrations"),
    path("patients/<int:patient_id>/", views.chart, name="chart"),
    path("patients/<int:patient_id>/registration/", views.registration_detail, name="registration_detail"),
    path("patients/<int:patient_id>/registration/edit/", views.edit_demographics, name="edit_demographics"),
    path("patients/<int:patient_id>/admit/", views.admit, name="admit"),
    path("patients/<int:patient_id>/encounters/<int:encounter_id>/discharge/", views.discharge, name="discharge"),
    path("patients/<int:patient_id>/care-team/", views.assign, name="assign"),
    path("patients/<int:patient_id>/care-team/<int:assignment_id>/end/", views.unassign, name="unassign"),
    path("appointments/", views.schedule, name="schedule"),
    path("patients/<int:patient_id>/appointments/new/", views.appointment_new, name="appointment_new"),
    path(
        "patients/<int:patient_id>/appointments/<int:appointment_id>/check-in/",
        views.appointment_check_in,
        name="appointment_check_in",
    ),
    path(
        "patients/<int:patient_id>/appointments/<int:appointment_id>/cancel/",
        views.appointment_cancel,
        name="appointment_cancel",
    ),
    path("patients/<int:patient_id>/notes/", views.note_new, name="note_new"),
    path("patients/<int:patient_id>/notes/<int:note_id>/amend/", views.note_amend, name="note_amend"),
    path("patients/<int:patient_id>/vitals/", views.vitals_new, name="vitals_new"),
    path("patients/<int:patient_id>/orders/", views.order_new, name="order_new"),
    path("patients/<int:patient_id>/orders/new/", views.order_form, name="order_form"),
    path("patients/<int:patient_id>/orders/<int:order_id>/cancel/", views.order_cancel, name="order_cancel"),
    path("patients/<int:patient_id>/prescriptions/", views.prescription_new, name="prescription_new"),
    path(
        "patients/<int:patient_id>/prescriptions/<int:medication_id>/administer/",
        views.administer,
        name="administer",
    ),
    path("patients/<int:patient_id>/conditions/", views.condition_new, name="condition_new"),
    path("patients/<int:patient_id>/allergies/", views.allergy_new, name="allergy_new"),
    path("worklist/", views.worklist, name="worklist"),
    path("worklist/completed/", views.worklist_completed, name="worklist_completed"),
    path("orders/<int:order_id>/", views.order_detail, name="order_detail"),
    path("orders/<int:order_id>/results/", views.order_result, name="order_result"),
    path("orders/<int:order_id>/report/", views.order_report, name="order_report"),
    path("orders/<int:order_id>/upload/", views.order_upload, name="order_upload"),
    path("orders/<int:order_id>/complete/", views.order_complete, name="order_complete"),
    path("attachments/<int:attachment_id>/", views.attachment_download, name="attachment_download"),
    path("my-record/", views.my_record, name="my_record"),
    # Break the glass (DESIGN.md §8): addressed by patient and grant ids only; searches are posted.
    path("emergency/", views_breakglass.start, name="emergency"),
    path("emergency/find/", views_breakglass.find, name="emergency_find"),
    path("emergency/patients/<int:patient_id>/", views_breakglass.request_access, name="emergency_request"),
    path("emergency/patients/<int:patient_id>/grant/", views_breakglass.grant, name="emergency_grant"),
    path("emergency/patients/<int:patient_id>/summary/", views_breakglass.summary, name="emergency_summary"),
    path("emergency/grants/<int:grant_id>/end/", views_breakglass.end, name="emergency_end"),
]
