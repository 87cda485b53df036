"""Forms of the clinical workflows. Each validates its input and says clearly what is wrong."""

from __future__ import annotations

import datetime
from typing import Any, cast

from django import forms
from django.utils import timezone

from accounts.models import Department, User
from accounts.roles import Role
from records import terminology
from records.crypto import normalise_name
from records.models import BreakGlassGrant, CareAssignment, ClinicalNote, Encounter, Medication, Order, Patient

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


class PatientSearchForm(forms.Form):
    """The search page: an MRN, or a surname with an optional given name and birth year or date.

    Posted, never in a URL; ``page`` and ``sort`` come back with the terms when the user pages or
    sorts (buttons of a form that posts the same terms again), and carry no patient value.
    """

    mrn = forms.CharField(label="MRN", max_length=32, required=False)
    family_name = forms.CharField(label="Surname", max_length=100, required=False)
    given_name = forms.CharField(label="Given name", max_length=100, required=False)
    birth_year = forms.IntegerField(
        label="Birth year", required=False, min_value=1890, error_messages={"min_value": "Enter a year after 1890."}
    )
    birth_date = forms.DateField(label="Birth date", required=False, widget=DATE_WIDGET)
    # Set by the pager and the column headers, not typed: a value that is not theirs falls back to
    # the first page and the default order rather than failing the search.
    page = forms.CharField(required=False, max_length=9, widget=forms.HiddenInput)
    sort = forms.CharField(required=False, max_length=20, widget=forms.HiddenInput)

    MIN_SURNAME = 2

    def __init__(self, *args: Any, sorts: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sorts = {k for key in sorts for k in (key, f"-{key}")}

    def clean_page(self) -> int:
        page: str = self.cleaned_data["page"]
        return int(page) if page.isdigit() and int(page) > 0 else 1

    def clean_sort(self) -> str:
        sort: str = self.cleaned_data["sort"]
        return sort if sort in self.sorts else ""

    def clean_birth_year(self) -> int | None:
        year: int | None = self.cleaned_data["birth_year"]
        if year is not None and year > timezone.localdate().year:
            raise forms.ValidationError("The birth year cannot be in the future.")
        return year

    def clean_birth_date(self) -> datetime.date | None:
        value: datetime.date | None = self.cleaned_data["birth_date"]
        _not_future(value, "birth date")
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("mrn", "").strip():
            return data
        surname = normalise_name(data.get("family_name") or "")
        if not surname:
            if not self.errors:
                raise forms.ValidationError("Enter an MRN, or a surname (a given name and birth year narrow it).")
            return data
        if len(surname.replace(" ", "")) < self.MIN_SURNAME:
            self.add_error("family_name", f"Enter at least {self.MIN_SURNAME} letters of the surname.")
        born, year = data.get("birth_date"), data.get("birth_year")
        if born and year and born.year != year:
            self.add_error("birth_year", "The birth year and the birth date disagree.")
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


class StaffChoiceField(forms.ModelChoiceField[User]):
    """A choice of staff member shown by full name (the username only when no name is on file)."""

    def label_from_instance(self, obj: User) -> str:
        return obj.display_name


class AdmitForm(forms.Form):
    kind = forms.ChoiceField(choices=Encounter.Kind.choices)
    department = forms.ModelChoiceField(
        queryset=Department.objects.filter(
            kind__in=[Department.Kind.WARD, Department.Kind.EMERGENCY, Department.Kind.OUTPATIENT]
        )
    )
    attending = StaffChoiceField(
        queryset=User.objects.filter(role=Role.PHYSICIAN, is_active=True).order_by("last_name", "first_name", "id"),
        required=False,
    )
    reason = forms.CharField(max_length=500, required=False)


class AppointmentForm(forms.Form):
    """Book a patient into a department's schedule. The departments offered are the desk's own
    (records.selectors.schedule_departments); the service refuses the past, overlaps and bad durations."""

    department = forms.TypedChoiceField(coerce=int, choices=())
    clinician = forms.ModelChoiceField(
        queryset=User.objects.filter(role=Role.PHYSICIAN, is_active=True).order_by("last_name"),
        required=False,
        help_text="Optional: the physician the patient sees.",
    )
    starts_at = forms.DateTimeField(
        label="Starts at",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"],
    )
    duration_minutes = forms.IntegerField(label="Duration (minutes)", initial=15)
    reason = forms.CharField(max_length=500, required=False)

    def __init__(self, *args: Any, departments: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = cast(forms.TypedChoiceField, self.fields["department"])
        field.choices = departments
        if len(departments) == 1:
            field.initial = departments[0][0]


class ScheduleFilterForm(forms.Form):
    """The schedule page's day and department (query parameters: no patient value is ever one)."""

    day = forms.DateField(required=False, widget=DATE_WIDGET)
    department = forms.TypedChoiceField(coerce=int, choices=(), required=False, empty_value=None)

    def __init__(self, *args: Any, departments: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = cast(forms.TypedChoiceField, self.fields["department"])
        field.choices = [("", "Every department"), *departments] if len(departments) > 1 else departments


class AssignForm(forms.Form):
    staff = StaffChoiceField(
        queryset=User.objects.filter(role__in=[Role.PHYSICIAN, Role.NURSE], is_active=True).order_by(
            "last_name", "first_name", "id"
        )
    )
    team_role = forms.ChoiceField(choices=CareAssignment.TeamRole.choices)


class NoteForm(forms.Form):
    kind = forms.ChoiceField(choices=ClinicalNote.Kind.choices)
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 6}), max_length=20_000)


class AmendForm(forms.Form):
    text = forms.CharField(label="Amendment", widget=forms.Textarea(attrs={"rows": 4}), max_length=20_000)


def _vital(label: str, name: str, *, decimal: bool = False) -> forms.Field:
    """A vital-sign field whose limits and per-field message come from records/terminology.py."""
    test = next(t for t in terminology.VITAL_SIGNS.values() if t.name == name)
    low, high = test.plausible
    unit = {"mm[Hg]": "mm Hg", "Cel": "°C"}.get(test.unit, test.unit)
    message = f"{name} must be between {low} and {high} {unit}."
    errors = {"min_value": message, "max_value": message}
    if decimal:
        return forms.DecimalField(
            label=label, min_value=low, max_value=high, decimal_places=1, required=False, error_messages=errors
        )
    return forms.IntegerField(
        label=label, min_value=int(low), max_value=int(high), required=False, error_messages=errors
    )


class VitalsForm(forms.Form):
    """One set of vital signs; empty fields are skipped, at least one is needed.

    Each value must lie within plausible limits (records/terminology.py; outside them it is an entry
    error, refused with a message on that field), and the systolic pressure must be above the
    diastolic. Plausible but abnormal values are saved and flagged in the chart by the service.
    """

    heart_rate = _vital("Heart rate (/min)", "Heart rate")
    systolic = _vital("Systolic BP (mm Hg)", "Systolic blood pressure")
    diastolic = _vital("Diastolic BP (mm Hg)", "Diastolic blood pressure")
    temperature = _vital("Temperature (°C)", "Body temperature", decimal=True)
    spo2 = _vital("SpO₂ (%)", "Oxygen saturation")

    FIELDS = {
        "heart_rate": ("8867-4", "Heart rate", "/min"),
        "systolic": ("8480-6", "Systolic blood pressure", "mm[Hg]"),
        "diastolic": ("8462-4", "Diastolic blood pressure", "mm[Hg]"),
        "temperature": ("8310-5", "Body temperature", "Cel"),
        "spo2": ("59408-5", "Oxygen saturation", "%"),
    }

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        # "At least one" only when nothing was typed: a value refused above has its own message.
        typed = any(str(self.data.get(self.add_prefix(name), "")).strip() for name in self.FIELDS)
        if not typed:
            raise forms.ValidationError("Enter at least one vital sign.")
        systolic, diastolic = data.get("systolic"), data.get("diastolic")
        if systolic is not None and diastolic is not None and systolic <= diastolic:
            self.add_error(
                "diastolic",
                "The diastolic pressure must be lower than the systolic; check that they are not swapped.",
            )
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


OTHER = ""


class PrescriptionForm(forms.Form):
    """A prescription: a listed drug (coded, RxNorm) or a free-text name (saved uncoded).

    The override fields are answered only after an allergy warning (records/services/safety.py);
    ``offer_override=False`` leaves them out of a form shown before any warning.
    """

    code = forms.ChoiceField(
        label="Medication (RxNorm)",
        choices=[(OTHER, "Not in the list: type the name below"), *terminology.drug_choices()],
        required=False,
    )
    display = forms.CharField(
        label="Medication name, if not in the list", max_length=255, required=False, help_text="Saved as uncoded."
    )
    dosage = forms.CharField(max_length=255)
    frequency = forms.ChoiceField(
        label="How often",
        choices=Medication.Frequency.choices,
        help_text="Scheduled doses appear on the ward's due medications; as needed and single doses do not.",
    )
    allergy_override = forms.BooleanField(label="Prescribe despite the allergy", required=False)
    allergy_override_reason = forms.CharField(
        label="Reason for prescribing despite the allergy",
        max_length=500,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def __init__(self, *args: Any, offer_override: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not offer_override:
            self.hide_override()

    def hide_override(self) -> None:
        for name in ("allergy_override", "allergy_override_reason"):
            self.fields.pop(name, None)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not data.get("code") and not (data.get("display") or "").strip() and "display" not in self.errors:
            self.add_error("display", "Choose a medication from the list or type its name.")
        if data.get("allergy_override") and not (data.get("allergy_override_reason") or "").strip():
            self.add_error("allergy_override_reason", "Give the reason for prescribing despite the allergy.")
        if not data.get("allergy_override"):
            data["allergy_override_reason"] = ""
        return data


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
    """An allergy: a listed allergen class or drug (coded) or a free-text substance (saved uncoded)."""

    code = forms.ChoiceField(
        label="Allergen",
        choices=[(OTHER, "Not in the list: type the substance below"), *terminology.allergen_choices()],
        required=False,
    )
    substance = forms.CharField(
        label="Substance, if not in the list", max_length=255, required=False, help_text="Saved as uncoded."
    )
    reaction = forms.CharField(max_length=255, required=False)
    severity = forms.ChoiceField(
        choices=[("", "Unknown"), ("mild", "Mild"), ("moderate", "Moderate"), ("severe", "Severe")], required=False
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not data.get("code") and not (data.get("substance") or "").strip() and "substance" not in self.errors:
            self.add_error("substance", "Choose an allergen from the list or type the substance.")
        return data


class ResultForm(forms.Form):
    """A result: a listed test (numeric, in its unit, flagged against its ranges) or another, typed."""

    loinc_code = forms.ChoiceField(
        label="Test",
        choices=[(OTHER, "Other test: type its name below"), *terminology.lab_test_choices()],
        required=False,
    )
    display = forms.CharField(label="Test name, if not in the list", max_length=255, required=False)
    value = forms.CharField(max_length=255)
    unit = forms.CharField(max_length=32, required=False, help_text="Listed tests use the unit shown.")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        test = terminology.LAB_TESTS.get(data.get("loinc_code") or "")
        if test is not None:
            data["display"] = data.get("display") or test.name
        elif not (data.get("display") or "").strip() and "display" not in self.errors:
            self.add_error("display", "Choose a test from the list or type its name.")
        return data


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
