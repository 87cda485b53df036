"""The partner API, under ``/fhir/r4/`` (healthcrypt/urls.py): discovery, the token endpoint, and the
read-only resource endpoints (exchange/api/resources.py)."""

from __future__ import annotations

from django.urls import path, re_path

from exchange.api import metadata, resources, token

app_name = "fhir"

urlpatterns = [
    path("metadata", metadata.metadata, name="metadata"),
    path(".well-known/smart-configuration", metadata.smart_configuration, name="smart-configuration"),
    path("auth/token", token.token, name="token"),
    path("Patient", resources.patient_search, name="patient-search"),
    path("Patient/_search", resources.patient_search_post, name="patient-search-post"),
    path("Patient/<str:patient_id>", resources.patient_read, name="patient-read"),
    path("Patient/<str:patient_id>/$everything", resources.patient_everything, name="patient-everything"),
    path("Observation", resources.observation_search, name="observation-search"),
    path("Condition", resources.condition_search, name="condition-search"),
    path("MedicationRequest", resources.medication_request_search, name="medicationrequest-search"),
    path("AllergyIntolerance", resources.allergy_intolerance_search, name="allergyintolerance-search"),
    re_path(r"^(?P<rest>.*)$", resources.not_found, name="not-found"),
]
