"""The partner API's security checks."""

from __future__ import annotations

from typing import Any

from exchange.checks import check_fhir_base_url, check_shared_cache


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


def test_production_wants_a_cache_shared_by_every_process_for_the_rate_limits(settings: Any) -> None:
    settings.DEBUG = False
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert [message.id for message in check_shared_cache()] == ["exchange.W003"]
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://x"}}
    assert check_shared_cache() == []
    settings.DEBUG = True  # the demo: one process
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert check_shared_cache() == []
