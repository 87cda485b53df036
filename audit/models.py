"""The audit trail (DESIGN.md §6): access events, change events and authentication events.

No patient data values are stored: a patient is referenced by id, a change by the names of the
fields it touched. Append-only enforcement and the hash chain arrive with the audit issue.
"""

from __future__ import annotations

from django.db import models


class AccessEvent(models.Model):
    """A read of patient data: a chart section, a search, a list, a download, an export."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor_id = models.BigIntegerField(null=True, db_index=True)
    actor_username = models.CharField(max_length=150, blank=True)
    actor_role = models.CharField(max_length=20, blank=True)
    patient_id = models.BigIntegerField(null=True, db_index=True)
    category = models.CharField(max_length=32)
    action = models.CharField(max_length=32)
    purpose = models.CharField(max_length=64, blank=True)
    explanation = models.CharField(max_length=64, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    session_ref = models.CharField(max_length=32, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["patient_id", "at"]), models.Index(fields=["actor_id", "at"])]

    def __str__(self) -> str:
        return f"Access event #{self.pk}"


class ChangeEvent(models.Model):
    """A change to patient data through the write path: which fields, never their values."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor_id = models.BigIntegerField(null=True, db_index=True)
    actor_username = models.CharField(max_length=150, blank=True)
    actor_role = models.CharField(max_length=20, blank=True)
    patient_id = models.BigIntegerField(null=True, db_index=True)
    category = models.CharField(max_length=32)
    action = models.CharField(max_length=32)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.BigIntegerField(null=True)
    fields = models.JSONField(default=list, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)
    request_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Change event #{self.pk}"


class AuthEventRecord(models.Model):
    """Sign-in, sign-out, failures, lockouts, enrolment, password and role changes."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    event = models.CharField(max_length=32, db_index=True)
    actor_id = models.BigIntegerField(null=True)
    target_id = models.BigIntegerField(null=True, db_index=True)
    username = models.CharField(max_length=150, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Auth event #{self.pk}"
