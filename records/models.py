"""The clinical record. Every identifying or clinical value is an encrypted field (records/fields.py);
lookups go through blind-index columns. ``__str__`` never shows patient data (audit stores it).

Reads of these models for a person go through records/selectors.py; writes through
records/services.py. Views never query them directly.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from records.fields import encrypt


class Patient(models.Model):
    class Sex(models.TextChoices):
        FEMALE = "female", "Female"
        MALE = "male", "Male"
        OTHER = "other", "Other"
        UNKNOWN = "unknown", "Unknown"

    mrn = encrypt(models.CharField("MRN", max_length=32))
    given_name = encrypt(models.CharField(max_length=100))
    family_name = encrypt(models.CharField(max_length=100))
    birth_date = encrypt(models.DateField())
    sex = encrypt(models.CharField(max_length=10, choices=Sex.choices))
    address_line = encrypt(models.CharField(max_length=200, blank=True))
    city = encrypt(models.CharField(max_length=100, blank=True))
    postal_code = encrypt(models.CharField(max_length=16, blank=True))
    phone = encrypt(models.CharField(max_length=32, blank=True))
    email = encrypt(models.EmailField(blank=True))

    # Blind indexes (HMAC of the normalised value) for exact lookup without decrypting.
    mrn_index = models.CharField(max_length=64, unique=True, editable=False)
    name_dob_index = models.CharField(max_length=64, db_index=True, editable=False)

    # The patient's own portal account, if they have one.
    portal_user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="patient_record"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"Patient #{self.pk}"


class CareAssignment(models.Model):
    """A staff member on a patient's care team; an active one grants access to the chart."""

    class TeamRole(models.TextChoices):
        ATTENDING = "attending", "Attending physician"
        RESIDENT = "resident", "Resident"
        CONSULTANT = "consultant", "Consultant"
        PRIMARY_NURSE = "primary_nurse", "Primary nurse"
        NURSE = "nurse", "Nurse"

    staff = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="care_assignments")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="care_assignments")
    team_role = models.CharField(max_length=20, choices=TeamRole.choices)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField(null=True, blank=True)
    assigned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["staff", "patient"]), models.Index(fields=["patient", "ends_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__isnull=True) | Q(ends_at__gt=F("starts_at")),
                name="records_assignment_ends_after_start",
            ),
        ]

    def __str__(self) -> str:
        return f"Assignment #{self.pk} (staff {self.staff_id}, patient {self.patient_id})"
