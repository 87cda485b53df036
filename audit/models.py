"""The audit trail (DESIGN.md §6): access events, change events, authentication events, direct
database changes, and the heads of the hash chains that make them tamper-evident (audit/chain.py).

No patient data values are stored: a patient is referenced by id, a change by the names of the
fields it touched. Every table here is append-only, enforced by database triggers (migrations).
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from audit.chain import AuditChainHead, Chained

__all__ = ["AccessEvent", "AuditChainHead", "AuthEventRecord", "ChangeEvent", "DirectChange"]


class AccessEvent(Chained):
    """A read of patient data: a chart section, a search, a list, a download, an export, the audit trail itself."""

    STREAM = "access"

    at = models.DateTimeField(default=timezone.now, db_index=True)
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
        constraints = [models.UniqueConstraint(fields=["partition", "seq"], name="audit_access_chain_unique")]

    def __str__(self) -> str:
        return f"Access event #{self.pk}"


class ChangeEvent(Chained):
    """A change to patient data through the write path: which fields, never their values."""

    STREAM = "change"

    at = models.DateTimeField(default=timezone.now, db_index=True)
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
        constraints = [models.UniqueConstraint(fields=["partition", "seq"], name="audit_change_chain_unique")]

    def __str__(self) -> str:
        return f"Change event #{self.pk}"


class AuthEventRecord(Chained):
    """Sign-in, sign-out, failures, lockouts, enrolment, password and role changes, account changes."""

    STREAM = "auth"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    event = models.CharField(max_length=32, db_index=True)
    actor_id = models.BigIntegerField(null=True)
    target_id = models.BigIntegerField(null=True, db_index=True)
    username = models.CharField(max_length=150, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "authentication event"
        constraints = [models.UniqueConstraint(fields=["partition", "seq"], name="audit_auth_chain_unique")]

    def __str__(self) -> str:
        return f"Auth event #{self.pk}"


class DirectChange(models.Model):
    """A row change on a clinical table, written by a PostgreSQL trigger (not by the application).

    ``actor_marker`` is the per-transaction marker the application sets before every write
    (records/db.py); an empty one means the change was made behind the application's back.
    """

    at = models.DateTimeField(default=timezone.now, db_index=True)
    table_name = models.CharField(max_length=64)
    operation = models.CharField(max_length=8)
    row_id = models.BigIntegerField(null=True)
    actor_marker = models.CharField(max_length=64, blank=True)
    db_user = models.CharField(max_length=64, blank=True)
    client_addr = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["actor_marker", "at"])]

    def __str__(self) -> str:
        return f"Direct change #{self.pk}"

    @property
    def is_direct(self) -> bool:
        return not self.actor_marker
