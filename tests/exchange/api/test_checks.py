"""The partner API's security checks."""

from __future__ import annotations

from typing import Any

from exchange.checks import check_fhir_base_url


def ids(settings: Any) -> list[str]:
    return [message.id or "" for message in check_fhir_base_url()]


def test_production_wants_an_https_base_url(settings: Any) -> None:
    settings.DEBUG = False
    settings.FHIR_BASE_URL = ""
    assert ids(settings) == ["exchange.W001"]
    settings.FHIR_BASE_URL = "http://ehr.example.org/fhir/r4"
    assert ids(settings) == ["exchange.E001"]
    settings.FHIR_BASE_URL = "https://ehr.example.org/fhir/r4"
    assert ids(settings) == []


def test_token_lifetime_is_five_minutes_at_most(settings: Any) -> None:
    settings.DEBUG = True
    settings.PARTNER_TOKEN_SECONDS = 3600
    assert ids(settings) == ["exchange.E002"]
