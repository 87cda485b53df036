"""Plaintext mirrors of what the load test's pages show: the read models' columns, nothing encrypted.

Filled from the subject's own rows (bench/load/seed.py, ``mirror``), so both sides serve the same
patients, values and ids. Staff names are copied as text (the subject joins the user table); the
plaintext ids the dashboards filter on (staff, department, stored status and kind codes) are copied
as plain integers and strings, so the baseline's lists select the same rows as the subject's.
"""

from __future__ import annotations

from django.db import models


class PlainPatient(models.Model):
    id = models.BigIntegerField(primary_key=True)  # the real patient's id: the same URLs on both sides
    mrn = models.CharField(max_length=32, unique=True)
    given_name = models.CharField(max_length=100)
    family_name = models.CharField(max_length=100)
    family_name_lower = models.CharField(max_length=100, db_index=True)
    birth_date = models.DateField()
    sex = models.CharField(max_length=10)
    is_confidential = models.BooleanField(default=False)
    registered_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"bench row #{self.pk}"


class PlainCare(models.Model):
    """Who may open the chart: the policy the baseline does not check, used for lists only."""

    staff_id = models.BigIntegerField(db_index=True)
    patient = models.ForeignKey(PlainPatient, on_delete=models.CASCADE)
    staff_name = models.CharField(max_length=200)
    staff_role = models.CharField(max_length=20)
    team_role = models.CharField(max_length=40)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField(null=True)  # lists and the chart keep the assignments in force now

    def __str__(self) -> str:
        return f"bench row #{self.pk}"


class PlainEncounter(models.Model):
    patient = models.ForeignKey(PlainPatient, on_delete=models.CASCADE)
    kind = models.CharField(max_length=40)
    status = models.CharField(max_length=40)
    department = models.CharField(max_length=100)
    attending = models.CharField(max_length=200)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField(null=True)
    reason = models.CharField(max_length=500)
    type_display = models.CharField(max_length=255)
    # What the ward, arrivals and my-patients panels filter on: the stored codes and ids.
    kind_code = models.CharField(max_length=20, default="")
    status_code = models.CharField(max_length=20, default="")
    department_id = models.BigIntegerField(null=True)
    attending_id = models.BigIntegerField(null=True)
    location = models.CharField(max_length=100, default="")

    class Meta:
        indexes = [models.Index(fields=["department_id", "status_code"])]

    def __str__(self) -> str:
        return f"bench row #{self.pk}"


class PlainCondition(models.Model):
    patient = models.ForeignKey(PlainPatient, on_delete=models.CASCADE)
    display = models.CharField(max_length=255)
    code = models.CharField(max_length=64)
    clinical_status = models.CharField(max_length=20)
    onset_date = models.DateField(null=True)
    abatement_date = models.DateField(null=True)
    recorded_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"bench row #{self.pk}"


class PlainAllergy(models.Model):
    patient = models.ForeignKey(PlainPatient, on_delete=models.CASCADE)
    substance = models.CharField(max_length=255)
    reaction = models.CharField(max_length=255)
    severity = models.CharField(max_length=20)
    code = models.CharField(max_length=64)
    recorded_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"bench row #{self.pk}"


class PlainMedication(models.Model):
    id = models.BigIntegerField(primary_key=True)  # the real prescription's id (administrations name it)
    patient = models.ForeignKey(PlainPatient, on_delete=models.CASCADE)
    display = models.CharField(max_length=255)
    code = models.CharField(max_length=64)
    dosage = models.CharField(max_length=255)
    status = models.CharField(max_length=40)
    prescribed_by = models.CharField(max_length=200)
    prescribed_at = models.DateTimeField()
    allergy_override_reason = models.CharField(max_length=500)
    frequency = models.CharField(max_length=40)
    # The chart orders by the stored status; the due-medications panel schedules by the stored frequency.
    status_code = models.CharField(max_length=20, default="")
    frequency_code = models.CharField(max_length=20, default="")

    def __str__(self) -> str:
        return f"bench row #{self.pk}"


class PlainObservation(models.Model):
    patient = models.ForeignKey(PlainPatient, on_delete=models.CASCADE)
    category = models.CharField(max_length=40)
    display = models.CharField(max_length=255)
    value = models.CharField(max_length=255)
    unit = models.CharField(max_length=32)
    loinc_code = models.CharField(max_length=32)
    effective_at = models.DateTimeField()
    recorded_by = models.CharField(max_length=200)
    order_id = models.BigIntegerField(null=True)
    interpretation = models.CharField(max_length=2)
    reference_range = models.CharField(max_length=64)

    class Meta:
        indexes = [models.Index(fields=["patient", "effective_at"])]

    def __str__(self) -> str:
        return f"bench row #{self.pk}"


class PlainOrder(models.Model):
    id = models.BigIntegerField(primary_key=True)  # the real order's id
    patient = models.ForeignKey(PlainPatient, on_delete=models.CASCADE)
    kind = models.CharField(max_length=40)
    status = models.CharField(max_length=40)
    priority = models.CharField(max_length=10)
    priority_label = models.CharField(max_length=40)
    description = models.CharField(max_length=255)
    code = models.CharField(max_length=64)
    reason = models.CharField(max_length=500)
    department = models.CharField(max_length=100)
    ordered_by = models.CharField(max_length=200)
    ordered_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True)
    # What the physician's and the department's panels filter on.
    kind_code = models.CharField(max_length=20, default="")
    ordered_by_id = models.BigIntegerField(null=True, db_index=True)
    department_id = models.BigIntegerField(null=True, db_index=True)

    def __str__(self) -> str:
        return f"bench row #{self.pk}"


class PlainNote(models.Model):
    patient = models.ForeignKey(PlainPatient, on_delete=models.CASCADE)
    kind = models.CharField(max_length=40)
    author = models.CharField(max_length=200)
    signed_at = models.DateTimeField()
    text = models.TextField()
    order_id = models.BigIntegerField(null=True)

    class Meta:
        indexes = [models.Index(fields=["patient", "signed_at"])]

    def __str__(self) -> str:
        return f"bench row #{self.pk}"


class PlainAdministration(models.Model):
    """A dose given, as the chart's administration record shows it."""

    patient = models.ForeignKey(PlainPatient, on_delete=models.CASCADE)
    medication_id = models.BigIntegerField(db_index=True)
    medication = models.CharField(max_length=255)
    dose = models.CharField(max_length=100)
    note = models.CharField(max_length=500)
    administered_by = models.CharField(max_length=200)
    administered_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"bench row #{self.pk}"


class PlainAttachment(models.Model):
    """An image's or document's metadata as the chart lists it (the file itself is not served here)."""

    id = models.BigIntegerField(primary_key=True)  # the real attachment's id: the same download links
    patient = models.ForeignKey(PlainPatient, on_delete=models.CASCADE)
    kind = models.CharField(max_length=40)
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100)
    description = models.CharField(max_length=255)
    size = models.BigIntegerField()
    uploaded_by = models.CharField(max_length=200)
    uploaded_at = models.DateTimeField()
    order_id = models.BigIntegerField(null=True)

    def __str__(self) -> str:
        return f"bench row #{self.pk}"


class PlainEvent(models.Model):
    """A procedure or an immunization (``kind``), as the chart's timeline shows it."""

    patient = models.ForeignKey(PlainPatient, on_delete=models.CASCADE)
    kind = models.CharField(max_length=20)
    display = models.CharField(max_length=255)
    at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["patient", "kind", "at"])]

    def __str__(self) -> str:
        return f"bench row #{self.pk}"


class PlainAppointment(models.Model):
    id = models.BigIntegerField(primary_key=True)  # the real appointment's id
    patient = models.ForeignKey(PlainPatient, on_delete=models.CASCADE)
    department_id = models.BigIntegerField()
    department = models.CharField(max_length=100)
    clinician_id = models.BigIntegerField(null=True)
    clinician = models.CharField(max_length=200)
    starts_at = models.DateTimeField(db_index=True)
    duration_minutes = models.IntegerField()
    reason = models.CharField(max_length=500)
    status = models.CharField(max_length=20)
    status_label = models.CharField(max_length=40)
    encounter_id = models.BigIntegerField(null=True)

    def __str__(self) -> str:
        return f"bench row #{self.pk}"


class PlainGrant(models.Model):
    """A break-the-glass grant as its holder's dashboard lists it (never the free-text explanation)."""

    id = models.BigIntegerField(primary_key=True)  # the real grant's id
    user_id = models.BigIntegerField(db_index=True)
    patient = models.ForeignKey(PlainPatient, on_delete=models.CASCADE)
    reason = models.CharField(max_length=32)
    reason_label = models.CharField(max_length=100)
    granted_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True)

    def __str__(self) -> str:
        return f"bench row #{self.pk}"
