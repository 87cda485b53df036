from __future__ import annotations

from django.urls import path

from exchange import views

app_name = "exchange"

urlpatterns = [
    # Behind a fresh one-time code (step_up_required): the download is the whole record.
    path("patients/<int:patient_id>/export/fhir/", views.export_record, name="export_record"),
]
