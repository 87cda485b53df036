"""Forms of the security workspace: the queue's filters and the actions on an alert."""

from __future__ import annotations

import re
from typing import Any, cast

from django import forms

from accounts.models import Department, User
from audit.alert_workflow import BULK_MAX, NOTE_MAX_LENGTH
from audit.models import Alert
from audit.security_selectors import DEFAULT_SORT, SORTS, QueueFilters

_RULE_RE = re.compile(r"^[a-z0-9_]{1,64}$")
STATUS_CHOICES = [("", "Any status"), ("active", "Open or acknowledged"), *Alert.Status.choices]
SORT_CHOICES = [
    ("severity", "Severity"),
    ("newest", "Newest first"),
    ("oldest", "Oldest first"),
    ("occurred", "When it happened"),
    ("rule", "Rule"),
    ("status", "Status"),
    ("user", "User"),
]
assert {key for key, _ in SORT_CHOICES} == set(SORTS)  # noqa: S101 (a module invariant, checked at import)


class QueueFilterForm(forms.Form):
    """The queue's filters (GET). Every value is validated, so only known values reach the audit event."""

    rule = forms.CharField(required=False, max_length=64)
    severity = forms.TypedChoiceField(
        required=False, choices=[("", "Any severity"), *Alert.Severity.choices], coerce=int, empty_value=None
    )
    status = forms.ChoiceField(required=False, choices=STATUS_CHOICES)
    department = forms.ModelChoiceField(required=False, queryset=Department.objects.all(), empty_label="Any department")
    user = forms.CharField(required=False, max_length=150, label="Username")
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    sort = forms.ChoiceField(required=False, choices=SORT_CHOICES)

    def __init__(self, *args: Any, rules: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["rule"].widget = forms.Select(choices=[("", "Any rule"), *[(r, r) for r in rules or []]])

    def clean_rule(self) -> str:
        rule = self.cleaned_data.get("rule") or ""
        if rule and not _RULE_RE.match(rule):
            raise forms.ValidationError("Unknown rule.")
        return rule

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise forms.ValidationError("The start date is after the end date.")
        return data

    def filters(self) -> QueueFilters:
        """The validated filters (call after is_valid())."""
        data = self.cleaned_data
        department = data.get("department")
        return QueueFilters(
            rule=data.get("rule") or "",
            severity=data.get("severity"),
            status=data.get("status") or "",
            department_id=department.pk if department else None,
            username=(data.get("user") or "").strip(),
            date_from=data.get("date_from"),
            date_to=data.get("date_to"),
            sort=data.get("sort") or DEFAULT_SORT,
        )


class BulkAcknowledgeForm(forms.Form):
    alert = forms.TypedMultipleChoiceField(coerce=int, choices=())

    def clean_alert(self) -> list[int]:
        ids: list[int] = self.cleaned_data["alert"]
        if len(ids) > BULK_MAX:
            raise forms.ValidationError(f"Select at most {BULK_MAX} alerts.")
        return ids

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Any id is a valid choice: the service acknowledges the open ones among them.
        raw = self.data.getlist("alert") if hasattr(self.data, "getlist") else []
        # The field is declared above; the stubs type ``fields[name]`` as any Field.
        field = cast(forms.TypedMultipleChoiceField, self.fields["alert"])
        field.choices = [(value, value) for value in raw if str(value).isdigit()]


class AssignForm(forms.Form):
    assignee = forms.ModelChoiceField(queryset=User.objects.none(), required=False, empty_label="Nobody")

    def __init__(self, *args: Any, team: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if team is not None:
            cast("forms.ModelChoiceField[User]", self.fields["assignee"]).queryset = team


class NoteForm(forms.Form):
    note = forms.CharField(max_length=NOTE_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 3}))


class CloseForm(forms.Form):
    resolution = forms.ChoiceField(
        choices=[("justified", "Justified (a legitimate reason)"), ("violation", "Violation (no legitimate reason)")],
        widget=forms.RadioSelect,
    )
    note = forms.CharField(
        max_length=NOTE_MAX_LENGTH,
        label="What you found",
        widget=forms.Textarea(attrs={"rows": 3}),
    )
