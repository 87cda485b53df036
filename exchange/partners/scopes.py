"""SMART v2 system scopes of the partner API (``system/Patient.rs``; v1's ``.read`` is accepted).

The API is read-only: ``r`` (read) and ``s`` (search) are the only permissions there are, so
``.rs`` and ``.read`` mean the same, and a token's scopes are stored in the ``.rs`` form.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError

# The resource types the API serves (the CapabilityStatement lists the same, exchange/api/metadata.py).
RESOURCE_TYPES = ("Patient", "Observation", "Condition", "MedicationRequest", "AllergyIntolerance")
_SCOPE_RE = re.compile(r"^system/(?P<resource>[A-Za-z*]{1,40})\.(?P<permission>rs|read)$")
MAX_SCOPE_LENGTH = 2000


def normalise(scope: str) -> str | None:
    """``system/X.rs`` for a scope of the API (``.read`` accepted), ``system/*.rs`` for the wildcard,
    None for anything else (unknown resource, write permission, another context)."""
    match = _SCOPE_RE.match(scope)
    if match is None:
        return None
    resource = match["resource"]
    if resource != "*" and resource not in RESOURCE_TYPES:
        return None
    return f"system/{resource}.rs"


def all_scopes() -> list[str]:
    return [f"system/{resource}.rs" for resource in RESOURCE_TYPES]


def validate_scope_list(value: Any) -> None:
    """Validator of ``Partner.allowed_scopes``: a list of concrete ``system/<Resource>.rs`` scopes."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError("A list of scopes, e.g. system/Patient.rs.")
    for item in value:
        if item not in all_scopes():
            raise ValidationError(f"Unknown scope {item[:60]!r}; known: {', '.join(all_scopes())}.")


def grant(requested: str, allowed: Iterable[str]) -> tuple[list[str], list[str]]:
    """The scopes to grant for a ``scope`` parameter: (as stored, as the partner spelled them).

    Granted = requested ∩ allowed. ``system/*.rs`` (or ``.read``) asks for every allowed scope.
    Unknown scopes are left out, as OAuth 2.0 lets a server grant less than asked (RFC 6749 §3.3).
    """
    allowed_set = set(allowed) & set(all_scopes())
    stored: list[str] = []
    spelled: list[str] = []
    for word in requested[:MAX_SCOPE_LENGTH].split():
        scope = normalise(word)
        if scope is None:
            continue
        matched = sorted(allowed_set) if scope == "system/*.rs" else [scope] if scope in allowed_set else []
        for item in matched:
            if item not in stored:
                stored.append(item)
                spelled.append(word if scope != "system/*.rs" else item)
    return stored, spelled
