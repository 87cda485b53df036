"""Dataset requests and the datasets built from them (issue 13). No patient data is stored here:
a request holds cohort criteria chosen by a researcher, a dataset its counts, privacy report and the
names and digests of the files written."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from research.kanon import DEFAULT_K, DEFAULT_MAX_SUPPRESSION

# The fields a request may ask for (the fixed catalogue; research/build.py knows each one).
FIELD_CATALOGUE: dict[str, str] = {
    "demographics_generalised": "Sex, state, ZIP3, age or 90+, birth and death years (Safe Harbor); "
    "sex, city, state, ZIP, birth and death dates, age (limited tier)",
    "conditions": "Condition codes (SNOMED CT / ICD-10) of the patient, distinct, sorted",
    "observations": "Observations: LOINC code, value, unit and year (limited tier: date)",
    "medications": "Medication codes (RxNorm), distinct, sorted",
    "notes_scrubbed": "Clinical notes scrubbed of identifiers (research/scrub: what the record knows plus "
    "patterns; recall measured in docs/research/scrubbing.md), with kind and year (limited tier: date). "
    "Without this field notes are dropped",
    "fhir_bundle": "The released rows (and observations) also as a FHIR R4 collection Bundle, dataset.fhir.json",
}
MAX_CONDITION_CODES = 50
CODE_MAX_LENGTH = 64


class DatasetRequest(models.Model):
    """A researcher's request for a de-identified dataset; compliance approves or rejects it."""

    class Tier(models.TextChoices):
        SAFE_HARBOR = "safe_harbor", "Safe Harbor"
        LIMITED = "limited", "Limited Data Set"

    class Status(models.TextChoices):
        SUBMITTED = "submitted", "Submitted"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        BUILT = "built", "Built"

    class Sex(models.TextChoices):
        ANY = "", "Any"
        FEMALE = "female", "Female"
        MALE = "male", "Male"
        OTHER = "other", "Other"
        UNKNOWN = "unknown", "Unknown"

    researcher = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="dataset_requests")
    title = models.CharField(max_length=200)
    purpose = models.TextField(max_length=4000)
    tier = models.CharField(max_length=20, choices=Tier.choices)
    dua_reference = models.CharField("data-use agreement reference", max_length=100, blank=True)
    condition_codes = models.JSONField(default=list, blank=True)
    age_min = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MaxValueValidator(130)])
    age_max = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MaxValueValidator(130)])
    encounters_from = models.DateField(null=True, blank=True)
    encounters_to = models.DateField(null=True, blank=True)
    sex = models.CharField(max_length=10, choices=Sex.choices, blank=True)
    fields = models.JSONField(default=list)
    k = models.PositiveSmallIntegerField(default=DEFAULT_K, validators=[MinValueValidator(2), MaxValueValidator(1000)])
    max_suppression = models.FloatField(
        default=DEFAULT_MAX_SUPPRESSION, validators=[MinValueValidator(0.0), MaxValueValidator(0.5)]
    )
    date_shift = models.BooleanField(default=False, help_text="Shift each patient's dates (limited tier)")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.SUBMITTED)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.TextField(max_length=2000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(tier="safe_harbor", dua_reference="") | (Q(tier="limited") & ~Q(dua_reference="")),
                name="research_request_dua_only_for_limited",
            ),
            models.CheckConstraint(
                condition=Q(age_min__isnull=True) | Q(age_max__isnull=True) | Q(age_min__lte=models.F("age_max")),
                name="research_request_age_band_ordered",
            ),
            models.CheckConstraint(
                condition=Q(encounters_from__isnull=True)
                | Q(encounters_to__isnull=True)
                | Q(encounters_from__lte=models.F("encounters_to")),
                name="research_request_dates_ordered",
            ),
            models.CheckConstraint(
                condition=~Q(tier="safe_harbor") | Q(date_shift=False),
                name="research_request_date_shift_only_for_limited",
            ),
        ]

    def __str__(self) -> str:
        return f"Dataset request {self.pk} ({self.tier}, {self.status})"

    @property
    def project(self) -> str:
        """The pseudonym project: one per request, so two requests' datasets cannot be joined."""
        return f"request-{self.pk}"


class Dataset(models.Model):
    """A dataset built from an approved request: counts, privacy report and files, no patient data."""

    request = models.ForeignKey(DatasetRequest, on_delete=models.PROTECT, related_name="datasets")
    built_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    built_at = models.DateTimeField()
    rows = models.PositiveIntegerField()
    privacy_report = models.JSONField()
    files = models.JSONField(help_text="[{name, sha256, bytes}]")

    class Meta:
        ordering = ["-built_at", "-id"]

    def __str__(self) -> str:
        return f"Dataset {self.pk} of request {self.request_id}"


class DownloadGrant(models.Model):
    """A single-use, expiring permission for a dataset's researcher to download its files.

    Only the SHA-256 of the random token is stored; the token itself is shown once, to the researcher
    who asked for it. ``used_at`` is set by one conditional UPDATE, so a token serves at most once.
    """

    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="download_grants")
    researcher = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(expires_at__gt=models.F("created_at")), name="research_grant_expires"),
        ]

    def __str__(self) -> str:
        return f"Download grant {self.pk} of dataset {self.dataset_id}"
