"""Refuse to start when patient data could be read or changed without being recorded."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register

from accounts.signals import auth_event
from records.signals import disclosure_made, patient_data_accessed, patient_data_changed

AUDIT_MIDDLEWARE = "audit.middleware.AuditContextMiddleware"


@register(Tags.security)
def check_audit_receivers(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Every signal of the read and write paths must have a receiver, and the context middleware must run."""
    errors: list[CheckMessage] = []
    signals = {
        "patient_data_accessed": patient_data_accessed,
        "patient_data_changed": patient_data_changed,
        "disclosure_made": disclosure_made,
        "auth_event": auth_event,
    }
    for name, signal in signals.items():
        if not signal.has_listeners():
            errors.append(Error(f"No audit receiver is connected to {name}.", id="healthcrypt.E010"))
    if AUDIT_MIDDLEWARE not in settings.MIDDLEWARE:
        errors.append(Error(f"{AUDIT_MIDDLEWARE} is not in MIDDLEWARE.", id="healthcrypt.E011"))
    return errors
