"""The clinical record. Every identifying or clinical value is an encrypted field (healthcrypt/fields.py);
lookups go through blind-index columns. ``__str__`` never shows patient data (audit stores it).

What stays in plaintext, on purpose (docs/decisions/0005-clinical-record.md): foreign keys, workflow
states (order status, encounter status), the kind of a record (lab or radiology order, observation
category), event timestamps (needed to sort and page a chart without decrypting all of it), the
department an order or admission is addressed to, and the confidential/VIP flag (read by anomaly
rules). None of them names a person or states a finding.

Reads of these models for a person go through records/selectors/; writes through
records/services/. Views never query them directly.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from accounts.models import Department
from healthcrypt.fields import RowIdentity, encrypt

STAFF = settings.AUTH_USER_MODEL


def unique_source(model: str) -> models.UniqueConstraint:
    """One row per patient and source id (an imported resource's blind index; empty for rows entered
    here): two imports of the same bundle at the same time cannot both insert it. The second waits for
    the first to commit, is refused, and the importer tries the bundle again (exchange/fhir/importer.py)."""
    return models.UniqueConstraint(
        fields=["patient", "source_id"], condition=~Q(source_id=""), name=f"records_{model}_unique_source"
    )


class Patient(RowIdentity):
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
    state = encrypt(models.CharField(max_length=64, blank=True))
    phone = encrypt(models.CharField(max_length=32, blank=True))
    email = encrypt(models.EmailField(blank=True))
    national_id = encrypt(models.CharField("National ID / SSN", max_length=32, blank=True))
    emergency_contact_name = encrypt(models.CharField(max_length=200, blank=True))
    emergency_contact_phone = encrypt(models.CharField(max_length=32, blank=True))
    deceased_date = encrypt(models.DateField(null=True, blank=True))
    # Confidential / VIP: extra scrutiny of every access (anomaly rules read it without decrypting).
    is_confidential = models.BooleanField(default=False)

    # Blind indexes (HMAC of the normalised value) for exact lookup without decrypting.
    mrn_index = models.CharField(max_length=64, unique=True, editable=False)
    name_dob_index = models.CharField(max_length=64, db_index=True, editable=False)
    # Normalised surname (records.crypto.normalise_name): the surname search and the same-surname rule.
    family_name_index = models.CharField(max_length=64, db_index=True, editable=False, default="")
    # Normalised given name(s): narrows a surname search.
    given_name_index = models.CharField(max_length=64, db_index=True, editable=False, default="")
    # Street address + postal code, for anomaly rules (same-address lookups), never for search.
    address_index = models.CharField(max_length=64, db_index=True, editable=False, default="")

    # The patient's own portal account, if they have one.
    portal_user = models.OneToOneField(
        STAFF, null=True, blank=True, on_delete=models.SET_NULL, related_name="patient_record"
    )
    # The staff account of a patient who works here (coworker and self-lookup rules); set by the front
    # desk or HR import. Separate from portal_user: a staff member may have both accounts.
    staff_user = models.OneToOneField(
        STAFF, null=True, blank=True, on_delete=models.SET_NULL, related_name="own_patient_record"
    )
    # Identifier of the resource this record was imported from (e.g. a FHIR id), for idempotent imports.
    # One patient per source id (a second import of the same patient at the same time is refused and
    # tried again); the plain index serves the lookup on SQLite, which does not use a partial one for it.
    source_id = models.CharField(max_length=64, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["source_id"], condition=~Q(source_id=""), name="records_patient_unique_source"
            )
        ]

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

    staff = models.ForeignKey(STAFF, on_delete=models.PROTECT, related_name="care_assignments")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="care_assignments")
    team_role = models.CharField(max_length=20, choices=TeamRole.choices)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField(null=True, blank=True)
    assigned_by = models.ForeignKey(STAFF, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
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


class Encounter(RowIdentity):
    """A visit or stay: an admission to a ward, an emergency visit, an outpatient appointment."""

    class Kind(models.TextChoices):
        INPATIENT = "inpatient", "Inpatient"
        EMERGENCY = "emergency", "Emergency"
        AMBULATORY = "ambulatory", "Outpatient"
        WELLNESS = "wellness", "Check-up"
        VIRTUAL = "virtual", "Virtual"

    class Status(models.TextChoices):
        PLANNED = "planned", "Planned"
        IN_PROGRESS = "in_progress", "In progress"
        FINISHED = "finished", "Finished"
        CANCELLED = "cancelled", "Cancelled"

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="encounters")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.IN_PROGRESS)
    # The ward or service (plaintext: nurses of the ward may open the chart while the stay is open).
    department = models.ForeignKey(Department, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    attending = models.ForeignKey(STAFF, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField(null=True, blank=True)
    reason = encrypt(models.CharField(max_length=500, blank=True))
    type_code = encrypt(models.CharField(max_length=64, blank=True))
    type_display = encrypt(models.CharField(max_length=255, blank=True))
    location = encrypt(models.CharField(max_length=200, blank=True))
    source_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["patient", "starts_at"]), models.Index(fields=["department", "status"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__isnull=True) | Q(ends_at__gte=F("starts_at")),
                name="records_encounter_ends_after_start",
            ),
            unique_source("encounter"),
        ]

    def __str__(self) -> str:
        return f"Encounter #{self.pk}"


class Order(RowIdentity):
    """A radiology or laboratory order, addressed to a department; an open one lets that department in."""

    class Kind(models.TextChoices):
        RADIOLOGY = "radiology", "Radiology"
        LAB = "lab", "Laboratory"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"

    class Priority(models.TextChoices):
        ROUTINE = "routine", "Routine"
        URGENT = "urgent", "Urgent"
        STAT = "stat", "Immediate (stat)"

    OPEN_STATUSES = (Status.OPEN, Status.IN_PROGRESS)

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="orders")
    encounter = models.ForeignKey(Encounter, null=True, blank=True, on_delete=models.PROTECT, related_name="orders")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    department = models.ForeignKey(Department, on_delete=models.PROTECT, related_name="+")
    ordered_by = models.ForeignKey(STAFF, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.ROUTINE)
    code = encrypt(models.CharField(max_length=64, blank=True))
    description = encrypt(models.CharField(max_length=255))
    reason = encrypt(models.CharField(max_length=500, blank=True))
    ordered_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    completed_by = models.ForeignKey(STAFF, null=True, blank=True, on_delete=models.PROTECT, related_name="+")

    class Meta:
        indexes = [models.Index(fields=["department", "status"]), models.Index(fields=["patient", "status"])]

    def __str__(self) -> str:
        return f"Order #{self.pk}"


class Observation(RowIdentity):
    """A measurement or result: a vital sign, a laboratory value, an imaging finding, a survey score."""

    class Category(models.TextChoices):
        VITAL_SIGNS = "vital-signs", "Vital signs"
        LABORATORY = "laboratory", "Laboratory"
        IMAGING = "imaging", "Imaging"
        SURVEY = "survey", "Survey"
        SOCIAL_HISTORY = "social-history", "Social history"
        EXAM = "exam", "Examination"
        OTHER = "other", "Other"

    class Status(models.TextChoices):
        PRELIMINARY = "preliminary", "Preliminary"
        FINAL = "final", "Final"
        AMENDED = "amended", "Amended"

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="observations")
    encounter = models.ForeignKey(
        Encounter, null=True, blank=True, on_delete=models.PROTECT, related_name="observations"
    )
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.PROTECT, related_name="observations")
    # A component of a panel (a blood pressure's systolic and diastolic values, imported from FHIR
    # ``Observation.component``): its own row, pointing to the panel's row of the same patient. One level
    # only (a component is not a panel). A structural link, no clinical value: plaintext, so that the
    # partner API can page a patient's observations in the database (exchange/api/resources.py).
    panel = models.ForeignKey(
        "self", null=True, blank=True, editable=False, on_delete=models.PROTECT, related_name="components"
    )
    category = models.CharField(max_length=20, choices=Category.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.FINAL)
    loinc_code = encrypt(models.CharField("LOINC code", max_length=32, blank=True))
    display = encrypt(models.CharField(max_length=255))
    value = encrypt(models.CharField(max_length=255))
    unit = encrypt(models.CharField(max_length=32, blank=True))
    # Flag against the reference interval (records/terminology.py: N, L, H, LL, HH) and the interval
    # itself as shown, for numeric tests. A finding, so encrypted like the value. NULL on rows saved
    # before the check existed (an encrypted column cannot be given a default by a migration).
    interpretation = encrypt(models.CharField(max_length=2, blank=True, null=True))
    reference_range = encrypt(models.CharField(max_length=64, blank=True, null=True))
    effective_at = models.DateTimeField()
    recorded_by = models.ForeignKey(STAFF, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    source_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["patient", "effective_at"])]
        constraints = [unique_source("observation")]

    def __str__(self) -> str:
        return f"Observation #{self.pk}"


class Condition(RowIdentity):
    """A diagnosis or problem-list entry."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="conditions")
    encounter = models.ForeignKey(Encounter, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    code = encrypt(models.CharField(max_length=64, blank=True))
    display = encrypt(models.CharField(max_length=255))
    clinical_status = encrypt(models.CharField(max_length=20, default="active"))
    onset_date = encrypt(models.DateField(null=True, blank=True))
    abatement_date = encrypt(models.DateField(null=True, blank=True))
    recorded_by = models.ForeignKey(STAFF, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    recorded_at = models.DateTimeField()
    source_id = models.CharField(max_length=64, blank=True)

    class Meta:
        constraints = [unique_source("condition")]

    def __str__(self) -> str:
        return f"Condition #{self.pk}"


class Medication(RowIdentity):
    """A prescription (FHIR MedicationRequest)."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        COMPLETED = "completed", "Completed"
        STOPPED = "stopped", "Stopped"

    class Frequency(models.TextChoices):
        """How often a dose is given: the schedule the nurses' "due medications" follow (SCHEDULE_HOURS)."""

        ONCE = "once", "Once"
        EVERY_4_HOURS = "q4h", "Every 4 hours"
        EVERY_6_HOURS = "q6h", "Every 6 hours"
        EVERY_8_HOURS = "q8h", "Every 8 hours"
        EVERY_12_HOURS = "q12h", "Every 12 hours"
        DAILY = "daily", "Once daily"
        AS_NEEDED = "prn", "As needed"

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="medications")
    encounter = models.ForeignKey(Encounter, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    code = encrypt(models.CharField(max_length=64, blank=True))
    display = encrypt(models.CharField(max_length=255))
    dosage = encrypt(models.CharField(max_length=255, blank=True))
    # Why the prescriber went ahead despite an allergy warning (records/services/safety.py); empty or
    # NULL when no warning was overridden.
    allergy_override_reason = encrypt(models.CharField(max_length=500, blank=True, null=True))
    # The coded schedule (Frequency), encrypted like the dosage it belongs with: it says how a patient is
    # treated. Empty or NULL on prescriptions written before it existed, or imported without one: never due.
    frequency = encrypt(models.CharField(max_length=8, choices=Frequency.choices, blank=True, null=True))
    prescribed_by = models.ForeignKey(STAFF, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    prescribed_at = models.DateTimeField()
    source_id = models.CharField(max_length=64, blank=True)

    class Meta:
        constraints = [unique_source("medication")]

    def __str__(self) -> str:
        return f"Medication #{self.pk}"


FREQUENCY_LABELS: dict[str, str] = dict(Medication.Frequency.choices)
# Hours between doses of each scheduled frequency. "Once" and "as needed" have no interval: a single
# dose or one given on request is never "due" on a ward's list.
SCHEDULE_HOURS: dict[str, int] = {
    Medication.Frequency.EVERY_4_HOURS: 4,
    Medication.Frequency.EVERY_6_HOURS: 6,
    Medication.Frequency.EVERY_8_HOURS: 8,
    Medication.Frequency.EVERY_12_HOURS: 12,
    Medication.Frequency.DAILY: 24,
}


class MedicationAdministration(RowIdentity):
    """A dose given by a nurse."""

    medication = models.ForeignKey(Medication, on_delete=models.PROTECT, related_name="administrations")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="+")
    administered_by = models.ForeignKey(STAFF, on_delete=models.PROTECT, related_name="+")
    administered_at = models.DateTimeField()
    dose = encrypt(models.CharField(max_length=100))
    note = encrypt(models.CharField(max_length=500, blank=True))

    def __str__(self) -> str:
        return f"Administration #{self.pk}"


class Allergy(RowIdentity):
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="allergies")
    substance = encrypt(models.CharField(max_length=255))
    # RxNorm RxCUI of a drug, or an allergen class code ("class:penicillins"; records/terminology.py);
    # empty (or NULL on older rows) for an uncoded, free-text substance.
    code = encrypt(models.CharField(max_length=64, blank=True, null=True))
    reaction = encrypt(models.CharField(max_length=255, blank=True))
    severity = encrypt(models.CharField(max_length=20, blank=True))
    recorded_by = models.ForeignKey(STAFF, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    recorded_at = models.DateTimeField()
    source_id = models.CharField(max_length=64, blank=True)

    class Meta:
        verbose_name_plural = "allergies"
        constraints = [unique_source("allergy")]

    def __str__(self) -> str:
        return f"Allergy #{self.pk}"


class Procedure(RowIdentity):
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="procedures")
    encounter = models.ForeignKey(Encounter, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    code = encrypt(models.CharField(max_length=64, blank=True))
    display = encrypt(models.CharField(max_length=255))
    performed_at = models.DateTimeField()
    source_id = models.CharField(max_length=64, blank=True)

    class Meta:
        constraints = [unique_source("procedure")]

    def __str__(self) -> str:
        return f"Procedure #{self.pk}"


class Immunization(RowIdentity):
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="immunizations")
    encounter = models.ForeignKey(Encounter, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    code = encrypt(models.CharField(max_length=64, blank=True))
    display = encrypt(models.CharField(max_length=255))
    occurred_at = models.DateTimeField()
    source_id = models.CharField(max_length=64, blank=True)

    class Meta:
        constraints = [unique_source("immunization")]

    def __str__(self) -> str:
        return f"Immunization #{self.pk}"


class DiagnosticReport(RowIdentity):
    """A report grouping results (FHIR DiagnosticReport), e.g. a lipid panel; imported, not entered here."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="diagnostic_reports")
    encounter = models.ForeignKey(Encounter, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=20, default="final")
    code = encrypt(models.CharField(max_length=64, blank=True))
    display = encrypt(models.CharField(max_length=255))
    conclusion = encrypt(models.TextField(blank=True))
    # The result observations the report groups, as a count (the rows themselves are Observations).
    result_count = models.PositiveIntegerField(default=0)
    effective_at = models.DateTimeField()
    source_id = models.CharField(max_length=64, blank=True)

    class Meta:
        constraints = [unique_source("diagnosticreport")]

    def __str__(self) -> str:
        return f"Diagnostic report #{self.pk}"


class ImagingStudy(RowIdentity):
    """An imaging study's metadata (FHIR ImagingStudy): modality, body site, series and instance counts.

    The images themselves are attachments; an imported study carries only its description.
    """

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="imaging_studies")
    encounter = models.ForeignKey(Encounter, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=20, default="available")
    # DICOM UID of the study: identifies the patient's images in other systems, so encrypted.
    study_uid = encrypt(models.CharField(max_length=128, blank=True))
    modality = encrypt(models.CharField(max_length=16, blank=True))
    body_site = encrypt(models.CharField(max_length=255, blank=True))
    description = encrypt(models.CharField(max_length=255, blank=True))
    series_count = models.PositiveIntegerField(default=0)
    instance_count = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    source_id = models.CharField(max_length=64, blank=True)

    class Meta:
        verbose_name_plural = "imaging studies"
        constraints = [unique_source("imagingstudy")]

    def __str__(self) -> str:
        return f"Imaging study #{self.pk}"


class ClinicalNote(RowIdentity):
    """A signed note. A correction is a new note that ``amends`` the old one; nothing is overwritten."""

    class Kind(models.TextChoices):
        PROGRESS = "progress", "Progress note"
        NURSING = "nursing", "Nursing note"
        RADIOLOGY = "radiology", "Radiology report"
        LAB = "lab", "Laboratory comment"
        DISCHARGE = "discharge", "Discharge summary"
        EMERGENCY = "emergency", "Emergency note"

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="notes")
    encounter = models.ForeignKey(Encounter, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.PROTECT, related_name="notes")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    author = models.ForeignKey(STAFF, on_delete=models.PROTECT, related_name="+")
    text = encrypt(models.TextField())
    signed_at = models.DateTimeField()
    amends = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="amendments")

    class Meta:
        indexes = [models.Index(fields=["patient", "signed_at"])]

    def __str__(self) -> str:
        return f"Note #{self.pk}"


class Attachment(RowIdentity):
    """An image or document; the file is encrypted on disk (records/files/), its name and type too."""

    class Kind(models.TextChoices):
        IMAGING = "imaging", "Imaging study"
        DOCUMENT = "document", "Document"

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="attachments")
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.PROTECT, related_name="attachments")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    filename = encrypt(models.CharField(max_length=255))
    content_type = encrypt(models.CharField(max_length=100))
    description = encrypt(models.CharField(max_length=255, blank=True))
    # SHA-256 of the plaintext file, checked on every download (encrypted: it would confirm a guess).
    sha256 = encrypt(models.CharField(max_length=64))
    size = models.PositiveBigIntegerField()
    # Random name of the encrypted file under MEDIA_ROOT/attachments, and the key id it is under.
    storage_name = models.CharField(max_length=64, unique=True, editable=False)
    key_id = models.CharField(max_length=32, editable=False)
    # Format of the stored file (records/files/): 2 is bound to this row's row_uid, 1 (files stored
    # before row binding) to its storage name only. rotate_keys finds version 1 files by it; opening
    # a file checks the header itself, so a wrong value here cannot make a version 1 file readable.
    file_format = models.PositiveSmallIntegerField(default=2, editable=False)
    uploaded_by = models.ForeignKey(STAFF, on_delete=models.PROTECT, related_name="+")
    uploaded_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"Attachment #{self.pk}"


class BreakGlassGrant(RowIdentity):
    """Emergency access to one patient's record for one user, for a limited time (DESIGN.md §8).

    Created by records/breakglass.py after the user stated a reason and re-entered a one-time code.
    A grant never widens: it names one patient, and it ends at ``expires_at`` or when the user ends
    it (``ended_at``). Every grant raises an alert for review (audit/rules.py). The free-text
    explanation may describe the patient's condition, so it is encrypted like the rest of the record.
    """

    class Reason(models.TextChoices):
        EMERGENCY_TREATMENT = "emergency_treatment", "Emergency treatment (scene or emergency department)"
        UNABLE_TO_CONSENT = "unable_to_consent", "Patient unconscious or unable to give a history"
        MEDICATION_ALLERGY_CHECK = "medication_allergy_check", "Urgent check of medications or allergies"
        UNPLANNED_TRANSFER = "unplanned_transfer", "Unplanned transfer or handover"
        OTHER = "other", "Other (explain below)"

    user = models.ForeignKey(STAFF, on_delete=models.PROTECT, related_name="break_glass_grants")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="break_glass_grants")
    reason = models.CharField(max_length=32, choices=Reason.choices)
    explanation = encrypt(models.TextField(max_length=1000))
    granted_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-granted_at"]
        indexes = [models.Index(fields=["user", "patient", "expires_at"]), models.Index(fields=["granted_at"])]
        constraints = [
            models.CheckConstraint(condition=Q(expires_at__gt=F("granted_at")), name="break_glass_expires_after_grant")
        ]

    def __str__(self) -> str:
        return f"Break-the-glass grant #{self.pk}"


class Appointment(RowIdentity):
    """A booked visit in a department's day schedule; checking in opens its outpatient encounter.

    Plaintext, like an order's: the department, the clinician, the time and the workflow state (the
    schedule is sorted and filtered on them). The reason is what the patient comes for: encrypted.
    """

    class Status(models.TextChoices):
        BOOKED = "booked", "Booked"
        CHECKED_IN = "checked_in", "Checked in"
        CANCELLED = "cancelled", "Cancelled"
        NO_SHOW = "no_show", "Did not attend"

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="appointments")
    department = models.ForeignKey(Department, on_delete=models.PROTECT, related_name="+")
    clinician = models.ForeignKey(STAFF, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    starts_at = models.DateTimeField()
    duration_minutes = models.PositiveIntegerField(default=15)
    reason = encrypt(models.CharField(max_length=500, blank=True))
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.BOOKED)
    # The outpatient encounter opened at check-in.
    encounter = models.ForeignKey(Encounter, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    booked_by = models.ForeignKey(STAFF, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["department", "starts_at"]), models.Index(fields=["clinician", "starts_at"])]
        constraints = [
            models.CheckConstraint(condition=Q(duration_minutes__gt=0), name="records_appointment_positive_duration"),
        ]

    def __str__(self) -> str:
        return f"Appointment #{self.pk}"
