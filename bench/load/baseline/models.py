"""Plaintext mirrors of what the load test's pages show: the read models' columns, nothing encrypted.

Filled from the subject's own rows (bench/load/seed.py, ``mirror``), so both sides serve the same
patients, values and ids. Staff names are copied as text (the subject joins the user table).
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
    patient = models.ForeignKey(PlainPatient, on_delete=models.CASCADE)
    display = models.CharField(max_length=255)
    code = models.CharField(max_length=64)
    dosage = models.CharField(max_length=255)
    status = models.CharField(max_length=40)
    prescribed_by = models.CharField(max_length=200)
    prescribed_at = models.DateTimeField()
    allergy_override_reason = models.CharField(max_length=500)
    frequency = models.CharField(max_length=40)

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
