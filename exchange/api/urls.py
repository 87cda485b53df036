"""The partner API, under ``/fhir/r4/`` (healthcrypt/urls.py). Resource endpoints come next."""

from __future__ import annotations

from django.urls import path

from exchange.api import metadata, token

app_name = "fhir"

urlpatterns = [
    path("metadata", metadata.metadata, name="metadata"),
    path(".well-known/smart-configuration", metadata.smart_configuration, name="smart-configuration"),
    path("auth/token", token.token, name="token"),
]
