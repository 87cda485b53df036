"""Display helpers for clinical pages."""

from __future__ import annotations

from django import template

register = template.Library()

# UCUM codes as stored (and exchanged in FHIR) -> how clinicians write them.
UCUM_DISPLAY = {
    "Cel": "°C",
    "[degF]": "°F",
    "mm[Hg]": "mm Hg",
    "/min": "/min",
    "10*3/uL": "\u00d710\u00b3/\u00b5L",
    "kg/m2": "kg/m²",
}
EXPLANATIONS = {
    "care_team": "you are on the care team",
    "attending": "you are the attending physician",
    "ward": "the patient is on your ward",
    "order": "an open order for your department",
    "order_history": "an order your department completed (its work only, read-only)",
    "own_record": "your own record",
    "registration": "registration (demographics only)",
    "break_glass": "emergency access (break the glass)",
}


@register.filter
def unit(value: str) -> str:
    """A UCUM unit code as it is usually written."""
    return UCUM_DISPLAY.get(value, value)


@register.filter
def access_reason(value: str) -> str:
    """Why this person may see this record, in words."""
    return EXPLANATIONS.get(value, value.replace("_", " "))
