"""Forms of the clinical workflows. Each validates its input and says clearly what is wrong."""

from __future__ import annotations

import datetime
from typing import Any

from django import forms
from django.utils import timezone

from accounts.models import Department, User
from accounts.roles import Role
from records.models import BreakGlassGrant, CareAssignment, ClinicalNote, Encounter, Order, Patient

DATE_WIDGET = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")


def _not_future(value: datetime.date | None, what: str) -> None:
    if value and value > timezone.localdate():
        raise forms.ValidationError(f"The {what} cannot be in the future.")


class SearchForm(forms.Form):
    mrn = forms.CharField(label="MRN", max_length=32, required=False)
    family_name = forms.CharField(label="Surname", max_length=100, required=False)
    birth_date = forms.DateField(label="Birth date", required=False, widget=DATE_WIDGET)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not data.get("mrn") and not (data.get("family_name") and data.get("birth_date")):
            raise forms.ValidationError("Enter an MRN, or a surname together with a birth date.")
        return data


class DemographicsForm(forms.Form):
    mrn = forms.CharField(label="MRN", max_length=32)
    given_name = forms.CharField(label="Given name", max_length=100)
    family_name = forms.CharField(label="Surname", max_length=100)
    birth_date = forms.DateField(label="Birth date", widget=DATE_WIDGET)
    sex = forms.ChoiceField(choices=Patient.Sex.choices)
    address_line = forms.CharField(label="Address", max_length=200, required=False)
    city = forms.CharField(max_length=100, required=False)
    state = forms.CharField(max_length=64, required=False)
    postal_code = forms.CharField(label="Postal code", max_length=16, required=False)
    phone = forms.CharField(max_length=32, required=False)
    email = forms.EmailField(required=False)
    national_id = forms.CharField(label="National ID / SSN", max_length=32, required=False)
    emergency_contact_name = forms.CharField(label="Emergency contact", max_length=200, required=False)
    emergency_contact_phone = forms.CharField(label="Emergency contact phone", max_length=32, required=False)
    is_confidential = forms.BooleanField(
        label="Confidential (VIP) record", required=False, help_text="Every access to this record is reviewed."
    )

    def clean_birth_date(self) -> datetime.date:
        value: datetime.date = self.cleaned_data["birth_date"]
        _not_future(value, "birth date")
        if value.year < 1890:
            raise forms.ValidationError("Enter a birth date after 1890.")
        return value

    def clean_mrn(self) -> str:
        mrn: str = self.cleaned_data["mrn"]
        value = mrn.strip()
        if not value.replace("-", "").isalnum():
            raise forms.ValidationError("An MRN has only letters, digits and hyphens.")
        return value


class RegisterForm(DemographicsForm):
    confirm_not_duplicate = forms.BooleanField(
        label="I have searched: this is a different person from the patient with the same surname and birth date",
        required=False,
    )


class AdmitForm(forms.Form):
    kind = forms.ChoiceField(choices=Encounter.Kind.choices)
    department = forms.ModelChoiceField(
        queryset=Department.objects.filter(
            kind__in=[Department.Kind.WARD, Department.Kind.EMERGENCY, Department.Kind.OUTPATIENT]
        )
    )
    attending = forms.ModelChoiceField(
        queryset=User.objects.filter(role=Role.PHYSICIAN, is_active=True), required=False
    )
    reason = forms.CharField(max_length=500, required=False)


class AssignForm(forms.Form):
    staff = forms.ModelChoiceField(
        queryset=User.objects.filter(role__in=[Role.PHYSICIAN, Role.NURSE], is_active=True).order_by("last_name")
    )
    team_role = forms.ChoiceField(choices=CareAssignment.TeamRole.choices)


class NoteForm(forms.Form):
    kind = forms.ChoiceField(choices=ClinicalNote.Kind.choices)
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 6}), max_length=20_000)


class AmendForm(forms.Form):
    text = forms.CharField(label="Amendment", widget=forms.Textarea(attrs={"rows": 4}), max_length=20_000)


class VitalsForm(forms.Form):
    """One set of vital signs; empty fields are skipped, at least one is needed."""

    heart_rate = forms.IntegerField(label="Heart rate (/min)", min_value=20, max_value=250, required=False)
    systolic = forms.IntegerField(label="Systolic BP (mm Hg)", min_value=50, max_value=260, required=False)
    diastolic = forms.IntegerField(label="Diastolic BP (mm Hg)", min_value=20, max_value=160, required=False)
    temperature = forms.DecimalField(
        label="Temperature (°C)", min_value=30, max_value=44, decimal_places=1, required=False
    )
    spo2 = forms.IntegerField(label="SpO₂ (%)", min_value=50, max_value=100, required=False)

    FIELDS = {
        "heart_rate": ("8867-4", "Heart rate", "/min"),
        "systolic": ("8480-6", "Systolic blood pressure", "mm[Hg]"),
        "diastolic": ("8462-4", "Diastolic blood pressure", "mm[Hg]"),
        "temperature": ("8310-5", "Body temperature", "Cel"),
        "spo2": ("59408-5", "Oxygen saturation", "%"),
    }

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if all(data.get(name) is None for name in self.FIELDS):
            raise forms.ValidationError("Enter at least one vital sign.")
        return data


class OrderForm(forms.Form):
    kind = forms.ChoiceField(choices=Order.Kind.choices)
    department = forms.ModelChoiceField(
        queryset=Department.objects.filter(kind__in=[Department.Kind.RADIOLOGY, Department.Kind.LAB])
    )
    description = forms.CharField(max_length=255)
    code = forms.CharField(label="Code (LOINC)", max_length=64, required=False)
    reason = forms.CharField(max_length=500, required=False)
    priority = forms.ChoiceField(choices=Order.Priority.choices)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        department, kind = data.get("department"), data.get("kind")
        if department and kind and department.kind != kind:
            self.add_error(
                "department", "Send a radiology order to radiology and a laboratory order to the laboratory."
            )
        return data


class PrescriptionForm(forms.Form):
    display = forms.CharField(label="Medication", max_length=255)
    dosage = forms.CharField(max_length=255)
    code = forms.CharField(label="Code (RxNorm)", max_length=64, required=False)


class AdministerForm(forms.Form):
    dose = forms.CharField(max_length=100)
    note = forms.CharField(max_length=500, required=False)


class ConditionForm(forms.Form):
    display = forms.CharField(label="Diagnosis", max_length=255)
    code = forms.CharField(label="Code (SNOMED CT)", max_length=64, required=False)
    onset_date = forms.DateField(label="Onset", required=False, widget=DATE_WIDGET)

    def clean_onset_date(self) -> datetime.date | None:
        value: datetime.date | None = self.cleaned_data.get("onset_date")
        _not_future(value, "onset date")
        return value


class AllergyForm(forms.Form):
    substance = forms.CharField(max_length=255)
    reaction = forms.CharField(max_length=255, required=False)
    severity = forms.ChoiceField(
        choices=[("", "Unknown"), ("mild", "Mild"), ("moderate", "Moderate"), ("severe", "Severe")], required=False
    )


class ResultForm(forms.Form):
    display = forms.CharField(label="Test", max_length=255)
    value = forms.CharField(max_length=255)
    unit = forms.CharField(max_length=32, required=False)
    loinc_code = forms.CharField(label="LOINC code", max_length=32, required=False)


# Files are accepted by content, not by name or declared type: the first bytes must match.
ALLOWED_SIGNATURES = {
    "image/png": (0, b"\x89PNG\r\n\x1a\n"),
    "image/jpeg": (0, b"\xff\xd8\xff"),
    "application/pdf": (0, b"%PDF-"),
    "application/dicom": (128, b"DICM"),
}


def sniff_content_type(head: bytes) -> str | None:
    """The content type whose signature ``head`` (the first 132+ bytes) carries, or None."""
    for content_type, (offset, signature) in ALLOWED_SIGNATURES.items():
        if head[offset : offset + len(signature)] == signature:
            return content_type
    return None


class UploadForm(forms.Form):
    file = forms.FileField(help_text="PNG, JPEG, PDF or DICOM.")
    description = forms.CharField(max_length=255, required=False)

    def __init__(self, *args: Any, max_bytes: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_bytes = max_bytes

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload.size > self.max_bytes:
            raise forms.ValidationError(f"The file is larger than the limit of {self.max_bytes // (1024 * 1024)} MB.")
        head = upload.read(136)
        upload.seek(0)
        content_type = sniff_content_type(head)
        if content_type is None:
            raise forms.ValidationError("This kind of file is not accepted. Upload a PNG, JPEG, PDF or DICOM file.")
        self.cleaned_data["content_type"] = content_type
        return upload


class BreakGlassForm(forms.Form):
    """Why emergency access is needed (a choice and a few words, both required) and a fresh code."""

    reason = forms.ChoiceField(
        label="Reason",
        choices=[("", "Choose a reason"), *BreakGlassGrant.Reason.choices],
        error_messages={"required": "Choose the reason for emergency access."},
    )
    explanation = forms.CharField(
        label="Explain in a few words",
        help_text="Reviewed by the privacy team. At least 10 characters.",
        widget=forms.Textarea(attrs={"rows": 3}),
        min_length=10,
        max_length=1000,
        error_messages={
            "required": "Say in a few words why you need this record now.",
            "min_length": "Say in a few words why you need this record now (at least %(limit_value)d characters).",
        },
    )
    otp_token = forms.CharField(
        label="One-time code",
        max_length=16,
        help_text="The 6-digit code your authenticator app shows now.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
        error_messages={"required": "Enter the 6-digit code from your authenticator app."},
    )

    def clean_otp_token(self) -> str:
        entered: str = self.cleaned_data["otp_token"]
        token = entered.replace(" ", "")
        if not (len(token) == 6 and token.isdigit()):
            raise forms.ValidationError("Enter the 6 digits from your authenticator app.")
        return token
