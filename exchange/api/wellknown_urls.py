"""Routes under ``/.well-known/`` (healthcrypt/urls.py)."""

from __future__ import annotations

from django.urls import path

from exchange.api import jwks

urlpatterns = [
    path("jwks.json", jwks.hospital_jwks, name="hospital-jwks"),
]
