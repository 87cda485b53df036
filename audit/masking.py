"""Masking for django-auditlog's change history: encrypted fields are redacted completely.

django-auditlog's built-in mask keeps the second half of a value readable ("****5309"), which for a
phone number, a name or a diagnosis is still patient data. Here the history says *that* a field
changed, never what it held.
"""

from __future__ import annotations

REDACTED = "[redacted]"


def redact(value: str) -> str:
    """Replace any value entirely."""
    return REDACTED
