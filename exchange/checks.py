"""Security checks of the partner API's configuration and of the hospital's package keys (tagged
``security``, like healthcrypt/checks.py)."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register


@register(Tags.security)
def check_fhir_base_url(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """FHIR_BASE_URL names the audience of every client assertion: https in production, and set, so
    the token URL does not follow whatever Host a request arrived with."""
    url = str(getattr(settings, "FHIR_BASE_URL", "") or "")
    seconds = int(getattr(settings, "PARTNER_TOKEN_SECONDS", 300))
    messages: list[CheckMessage] = []
    if not 1 <= seconds <= 300:
        messages.append(
            Error(
                "PARTNER_TOKEN_SECONDS must be between 1 and 300.",
                hint="SMART Backend Services access tokens live five minutes at most.",
                id="exchange.E002",
            )
        )
    if settings.DEBUG:
        return messages
    if not url:
        messages.append(
            Warning(
                "FHIR_BASE_URL is not set: the partner API's token URL is taken from each request's host.",
                hint="Set FHIR_BASE_URL to the API's public URL, e.g. https://ehr.example.org/fhir/r4.",
                id="exchange.W001",
            )
        )
    elif urlsplit(url).scheme != "https":
        messages.append(
            Error(
                "FHIR_BASE_URL must be an https URL in production.",
                hint="Partners send their client assertions and bearer tokens to it.",
                id="exchange.E001",
            )
        )
    return messages


@register(Tags.security)
def check_hospital_keys(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The hospital's JOSE keys (exchange/keys.py): present and loadable in production, and a key file
    that only its owner can read."""
    from exchange.keys import HospitalKeysUnavailable, hospital_keys

    messages: list[CheckMessage] = []
    file_name = str(getattr(settings, "HOSPITAL_JWKS_FILE", "") or "")
    if file_name:
        try:
            mode = Path(file_name).stat().st_mode
        except OSError:
            mode = None
        if mode is not None and mode & (stat.S_IRWXG | stat.S_IRWXO):
            messages.append(
                Warning(
                    "HOSPITAL_JWKS_FILE holds private keys and is readable by group or others.",
                    hint="chmod 600 the file (generate_hospital_keys writes it so).",
                    id="exchange.W002",
                )
            )
    try:
        hospital_keys()
    except HospitalKeysUnavailable as error:
        if not settings.DEBUG:
            messages.append(
                Error(
                    f"The hospital's signing and encryption keys are unusable: {error}",
                    hint="Make them with `manage.py generate_hospital_keys --out FILE` and set HOSPITAL_JWKS_FILE.",
                    id="exchange.E003",
                )
            )
    return messages


@register(Tags.security)
def check_shared_cache(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The partner API's rate limits (per partner, and token requests per address) count in the Django
    cache: in production it must be one all the processes share, or each gunicorn worker counts on its
    own and the limit is multiplied by the workers."""
    if settings.DEBUG:
        return []
    backend = str(settings.CACHES.get("default", {}).get("BACKEND", ""))
    if not backend.endswith(("locmem.LocMemCache", "dummy.DummyCache")):
        return []
    return [
        Warning(
            "The cache is each process's own memory: the partner API's rate limits count per worker process.",
            hint="Set REDIS_URL to a Redis server shared by every process (e.g. redis://127.0.0.1:6379/0).",
            id="exchange.W003",
        )
    ]
