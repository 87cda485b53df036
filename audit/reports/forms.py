"""The compliance reports' forms, and the MRN lookup behind them and the admin's "Find by MRN".

Patient identifiers typed by a compliance officer (an MRN) never reach a URL, a log line or an
event: the MRN form is posted, resolved to the patient id, and the report is addressed by that id.
"""

from __future__ import annotations

import datetime
from typing import Any

from django import forms
from django.utils import timezone

from records.crypto import mrn_index
from records.models import Patient

DEFAULT_PERIOD_DAYS = 30
# The longest text that could be an MRN once spaces are counted; MRNs themselves are at most 32.
MRN_MAX_LENGTH = 64


def looks_like_mrn(term: str) -> bool:
    """True when ``term`` could be an MRN: letters, digits, hyphens (and stray spaces), not too long."""
    compact = "".join(term.split()).replace("-", "")
    return 0 < len(term) <= MRN_MAX_LENGTH and compact.isalnum()


def patient_ids_for_mrn(term: str) -> list[int]:
    """Ids of the patients whose MRN is ``term``, through the blind index (nothing is decrypted).

    The index already ignores case and outer spaces; the term is also tried with inner spaces
    removed, as someone copying an MRN from paper may type "HC 100 001" for "HC100001".
    """
    term = term.strip()
    if not looks_like_mrn(term):
        return []
    indexes = {mrn_index(term), mrn_index("".join(term.split()))}
    return list(Patient.objects.filter(mrn_index__in=indexes).order_by("id").values_list("id", flat=True))


class PeriodForm(forms.Form):
    date_from = forms.DateField(label="From", widget=forms.DateInput(format="%Y-%m-%d", attrs={"type": "date"}))
    date_to = forms.DateField(label="To (inclusive)", widget=forms.DateInput(format="%Y-%m-%d", attrs={"type": "date"}))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            raise forms.ValidationError("The period ends before it starts.")
        return cleaned


def default_period() -> dict[str, datetime.date]:
    today = timezone.localdate()
    return {"date_from": today - datetime.timedelta(days=DEFAULT_PERIOD_DAYS), "date_to": today}


class PatientReportForm(PeriodForm):
    """Patient by id or by MRN (exactly one), and a period."""

    patient_id = forms.IntegerField(label="Patient id", min_value=1, required=False)
    mrn = forms.CharField(
        label="or MRN",
        max_length=MRN_MAX_LENGTH,
        required=False,
        help_text="Looked up through the blind index; case and spaces do not matter. Never stored.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    field_order = ("patient_id", "mrn", "date_from", "date_to")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        patient_id, mrn = cleaned.get("patient_id"), (cleaned.get("mrn") or "").strip()
        if patient_id and mrn:
            raise forms.ValidationError("Give a patient id or an MRN, not both.")
        if mrn:
            ids = patient_ids_for_mrn(mrn)
            if not ids:
                # The message does not repeat the MRN.
                self.add_error("mrn", "No patient has this MRN.")
            else:
                cleaned["patient_id"] = ids[0]
            cleaned["mrn"] = ""
        elif not patient_id and "patient_id" not in self.errors:
            raise forms.ValidationError("Give a patient id or an MRN.")
        return cleaned


class UserReportForm(PeriodForm):
    """A username and a period."""

    username = forms.CharField(label="Username", max_length=150)
    field_order = ("username", "date_from", "date_to")
