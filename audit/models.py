"""The audit trail (DESIGN.md §6): access events, change events, authentication events, direct
database changes, and the heads of the hash chains that make them tamper-evident (audit/chain.py).

No patient data values are stored: a patient is referenced by id, a change by the names of the
fields it touched. Every table here is append-only, enforced by database triggers (migrations).
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from audit.chain import AuditChainHead, Chained

__all__ = [
    "AccessEvent",
    "AuditChainHead",
    "AuthEventRecord",
    "ChangeEvent",
    "DirectChange",
    "DirectChangeSeal",
]


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
    """A row change on a clinical table (or DDL on a guarded object), written by a PostgreSQL trigger.

    Written by the definer functions of audit/guards.py only, never by the application (its role may
    not INSERT here). ``db_user`` is the login (``session_user``); ``txid`` the transaction the change
    was made in; ``actor_marker`` the application's per-transaction marker (records/db.py), which the
    sealer (audit/sealing.py) checks against ``txid`` and ``AUDIT_MARKER_KEY``: whether it verified is
    on the row's :class:`DirectChangeSeal`. ``row_id`` is empty for a TRUNCATE and for DDL.
    """

    at = models.DateTimeField(default=timezone.now, db_index=True)
    table_name = models.CharField(max_length=64)
    operation = models.CharField(max_length=8)
    row_id = models.BigIntegerField(null=True)
    actor_marker = models.CharField(max_length=200, blank=True)
    db_user = models.CharField(max_length=64, blank=True)
    client_addr = models.CharField(max_length=64, blank=True)
    backend_pid = models.IntegerField(null=True)
    txid = models.BigIntegerField(null=True)
    application_name = models.CharField(max_length=64, blank=True)
    command = models.CharField(max_length=32, blank=True)  # the DDL command tag, for operation "DDL"

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["actor_marker", "at"])]

    def __str__(self) -> str:
        return f"Direct change #{self.pk}"

    @property
    def is_direct(self) -> bool:
        """No marker at all; whether a marker is genuine is known once sealed (``DirectChangeSeal.verified``)."""
        return not self.actor_marker


class DirectChangeSeal(Chained):
    """A sealed copy of one :class:`DirectChange`, chained like every other audit event (audit/sealing.py).

    Rows of ``audit_directchange`` are written by a trigger that cannot compute an HMAC; the sealer
    copies each one here, with the verdict on its marker, onto a single chain. A direct change deleted
    or altered after it was sealed no longer matches its seal, which ``verify_audit`` reports.
    """

    STREAM = "direct"

    at = models.DateTimeField(default=timezone.now)  # when it was sealed
    direct_change_id = models.BigIntegerField(unique=True)
    change_at = models.DateTimeField(db_index=True)
    table_name = models.CharField(max_length=64)
    operation = models.CharField(max_length=8)
    row_id = models.BigIntegerField(null=True)
    actor_marker = models.CharField(max_length=200, blank=True)
    db_user = models.CharField(max_length=64, blank=True)
    client_addr = models.CharField(max_length=64, blank=True)
    backend_pid = models.IntegerField(null=True)
    txid = models.BigIntegerField(null=True)
    application_name = models.CharField(max_length=64, blank=True)
    command = models.CharField(max_length=32, blank=True)
    verified = models.BooleanField()
    actor = models.CharField(max_length=64, blank=True)  # from a verified marker: user:<id> or system:<job>

    class Meta:
        ordering = ["-id"]
        verbose_name = "direct change seal"
        indexes = [models.Index(fields=["verified", "change_at"])]
        constraints = [models.UniqueConstraint(fields=["partition", "seq"], name="audit_direct_chain_unique")]

    def __str__(self) -> str:
        return f"Seal of direct change #{self.direct_change_id}"
