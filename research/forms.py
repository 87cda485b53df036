"""Forms of the research pages: a new dataset request, and compliance's decision on one."""

from __future__ import annotations

import re
from typing import Any

from django import forms

from research.models import FIELD_CATALOGUE, DatasetRequest

NOTE_MAX_LENGTH = 2000
# The service's error keys that are named differently here ("fields" would shadow Form.fields).
SERVICE_FIELD_NAMES = {"fields": "dataset_fields"}
_SEPARATORS = re.compile(r"[\s,;]+")


class RequestForm(forms.Form):
    """The researcher's request. Types and lengths are checked here; the rules (tiers, codes, the
    catalogue, age and date order) by ``research.services.request_submit``, whose errors the view
    puts back on these fields."""

    title = forms.CharField(max_length=200)
    purpose = forms.CharField(max_length=4000, widget=forms.Textarea(attrs={"rows": 4}))
    tier = forms.ChoiceField(choices=DatasetRequest.Tier.choices, widget=forms.RadioSelect)
    dua_reference = forms.CharField(
        label="Data-use agreement reference",
        max_length=100,
        required=False,
        help_text="Required for a limited data set; leave empty for Safe Harbor.",
    )
    condition_codes = forms.CharField(
        required=False,
        max_length=4000,
        help_text="SNOMED CT ids or ICD-10 codes, separated by commas or spaces; empty for any condition.",
    )
    age_min = forms.IntegerField(label="Age from", required=False, min_value=0, max_value=130)
    age_max = forms.IntegerField(label="Age to", required=False, min_value=0, max_value=130)
    encounters_from = forms.DateField(
        label="Encounters from", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    encounters_to = forms.DateField(
        label="Encounters to", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    sex = forms.ChoiceField(choices=DatasetRequest.Sex.choices, required=False)
    dataset_fields = forms.MultipleChoiceField(
        choices=list(FIELD_CATALOGUE.items()), widget=forms.CheckboxSelectMultiple, label="Fields"
    )
    k = forms.IntegerField(
        label="k (smallest group of alike rows)", initial=5, min_value=2, max_value=1000, required=False
    )
    date_shift = forms.BooleanField(
        label="Shift each patient's dates (limited data set only)", required=False, initial=False
    )

    def clean_condition_codes(self) -> list[str]:
        raw = self.cleaned_data.get("condition_codes") or ""
        return [code for code in _SEPARATORS.split(raw) if code]

    def submit_kwargs(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        data["sex"] = data.get("sex") or ""
        data["fields"] = data.pop("dataset_fields")
        return data


class DecisionForm(forms.Form):
    """Compliance's decision on a submitted request, with a note (required to reject)."""

    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject")], widget=forms.RadioSelect)
    note = forms.CharField(
        required=False, max_length=NOTE_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 3}), label="Decision note"
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("decision") == "reject" and not (cleaned.get("note") or "").strip():
            self.add_error("note", "Say why the request is rejected.")
        return cleaned
