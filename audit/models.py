"""The audit trail (DESIGN.md §6): access events, change events, authentication events, direct
database changes, and the heads of the hash chains that make them tamper-evident (audit/chain.py).

No patient data values are stored: a patient is referenced by id, a change by the names of the
fields it touched. Every table here is append-only, enforced by database triggers (migrations).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from audit.chain import AuditChainHead, Chained
from healthcrypt.fields import RowIdentity, encrypt

__all__ = [
    "AccessEvent",
    "ActivityBaseline",
    "AuditChainHead",
    "AuthEventRecord",
    "ChangeEvent",
    "DirectChange",
    "DirectChangeSeal",
    "sections_of",
    "shows_section",
]


def sections_of(row: Mapping[str, Any] | AccessEvent) -> list[str]:
    """The sections an access event showed: its ``sections``, or ``[category]`` for an event written
    before events listed them (one event per section then, see docs/code-layout.md). Every reader of
    "did this access show X" asks here, so old and new rows answer alike."""
    if isinstance(row, Mapping):
        sections, category = row.get("sections"), row.get("category", "")
    else:
        sections, category = row.sections, row.category
    return [str(s) for s in sections] if sections else [str(category)]


def shows_section(section: str) -> Q:
    """Access events that showed ``section``, as a filter the database applies, on SQLite and
    PostgreSQL alike: JSON ``contains`` is PostgreSQL-only, but a section is a quoted string in the
    stored list's text on both. ``category`` covers events written before ``sections`` (it is the
    primary section, listed in ``sections`` too, on every newer event)."""
    return Q(category=section) | Q(sections__icontains=f'"{section}"')


class AccessEvent(Chained):
    """A read of patient data: one event per patient per access (a chart view, a search, a list, a
    download, an export, the audit trail itself), listing the ``sections`` it showed. ``category`` is
    the access's primary section (the first one its caller named)."""

    STREAM = "access"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor_id = models.BigIntegerField(null=True)  # indexed with at (Meta.indexes)
    actor_username = models.CharField(max_length=150, blank=True)
    actor_role = models.CharField(max_length=20, blank=True)
    patient_id = models.BigIntegerField(null=True)  # indexed with at (Meta.indexes)
    category = models.CharField(max_length=32)
    # Every section shown, distinct and sorted; empty on events written one per section (read them
    # through sections_of, which falls back on [category]).
    sections = models.JSONField(default=list, blank=True)
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
        # What the admin, the reports and the rules filter on (docs/decisions/0006-audit-chain.md, "Indexes"):
        # a patient's or a user's events in a period, one action in a window (search results for the
        # search-then-open rule, the admin's action filter and its count), the period alone (at), and
        # the sealer's unsealed rows. The single-column actor and patient indexes were dropped: the
        # (actor_id, at) and (patient_id, at) ones serve every query they served, for one index less
        # to write per event.
        indexes = [
            models.Index(fields=["patient_id", "at"]),
            models.Index(fields=["actor_id", "at"]),
            models.Index(fields=["action", "at"], name="audit_access_action_at"),
            models.Index(fields=["id"], condition=Q(hash=""), name="audit_access_unsealed"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["partition", "seq"], name="audit_access_chain_unique"),
            models.UniqueConstraint(fields=["mac"], condition=~Q(mac=""), name="audit_access_mac_unique"),
        ]

    def __str__(self) -> str:
        return f"Access event #{self.pk}"

    @property
    def shown_sections(self) -> list[str]:
        """The sections this access showed (see :func:`sections_of`)."""
        return sections_of(self)


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
        indexes = [models.Index(fields=["id"], condition=Q(hash=""), name="audit_change_unsealed")]
        constraints = [
            models.UniqueConstraint(fields=["partition", "seq"], name="audit_change_chain_unique"),
            models.UniqueConstraint(fields=["mac"], condition=~Q(mac=""), name="audit_change_mac_unique"),
        ]

    def __str__(self) -> str:
        return f"Change event #{self.pk}"


class AuthEventRecord(Chained):
    """Sign-in, sign-out, failures, lockouts, enrolment, password and role changes, account changes."""

    STREAM = "auth"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    event = models.CharField(max_length=32)  # indexed with at (Meta.indexes)
    actor_id = models.BigIntegerField(null=True)
    target_id = models.BigIntegerField(null=True, db_index=True)
    username = models.CharField(max_length=150, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "authentication event"
        # Failures and lockouts in a window (the storm rules) and the admin's event filter.
        indexes = [
            models.Index(fields=["event", "at"], name="audit_auth_event_at"),
            models.Index(fields=["id"], condition=Q(hash=""), name="audit_auth_unsealed"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["partition", "seq"], name="audit_auth_chain_unique"),
            models.UniqueConstraint(fields=["mac"], condition=~Q(mac=""), name="audit_auth_mac_unique"),
        ]

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
        constraints = [
            models.UniqueConstraint(fields=["partition", "seq"], name="audit_direct_chain_unique"),
            models.UniqueConstraint(fields=["mac"], condition=~Q(mac=""), name="audit_direct_mac_unique"),
        ]

    def __str__(self) -> str:
        return f"Seal of direct change #{self.direct_change_id}"


class Alert(RowIdentity):
    """A finding of an anomaly rule (audit/rules.py) for the security team to work (DESIGN.md §7).

    Findings never modify sealed events: an alert points at them through :class:`AlertSubject` rows.
    ``reason`` is plain words with no patient data ("Opened the record of a patient who shares the
    user's surname; no care relationship"); the patient is named by id only. ``notes`` and
    ``resolution`` are written by investigators and may mention anything, so they are encrypted.
    Every change of an alert is itself audited (a ChangeEvent of category "alert").
    """

    class Severity(models.IntegerChoices):
        LOW = 1, "Low"
        MEDIUM = 2, "Medium"
        HIGH = 3, "High"
        CRITICAL = 4, "Critical"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        CLOSED_JUSTIFIED = "closed_justified", "Closed: justified"
        CLOSED_VIOLATION = "closed_violation", "Closed: violation"

    CLOSED_STATUSES = (Status.CLOSED_JUSTIFIED, Status.CLOSED_VIOLATION)

    rule = models.CharField(max_length=64, db_index=True)
    severity = models.PositiveSmallIntegerField(choices=Severity.choices, db_index=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN, db_index=True)
    reason = models.CharField(max_length=300)
    # Who and whom, as ids and the names at the time (no patient names: the patient is an id).
    actor_id = models.BigIntegerField(null=True, db_index=True)
    actor_username = models.CharField(max_length=150, blank=True)
    actor_role = models.CharField(max_length=20, blank=True)
    department_id = models.BigIntegerField(null=True, db_index=True)
    patient_id = models.BigIntegerField(null=True, db_index=True)
    # When what the alert is about happened, and when the alert was raised.
    occurred_at = models.DateTimeField(db_index=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="assigned_alerts"
    )
    notes = encrypt(models.TextField(blank=True))
    resolution = encrypt(models.TextField(blank=True))

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "severity", "created_at"])]

    def __str__(self) -> str:
        return f"Alert #{self.pk} ({self.rule})"


class AlertSubject(models.Model):
    """What an alert is about: one access event, direct change seal, auth event or break-the-glass grant.

    Unique per (rule, kind, object): a rule never alerts twice for the same event, whether it ran
    inline or in a later ``scan_access``.
    """

    class Kind(models.TextChoices):
        ACCESS = "access", "Access event"
        DIRECT = "direct", "Direct database change"
        CHANGE = "change", "Change event"
        AUTH = "auth", "Authentication event"
        GRANT = "grant", "Break-the-glass grant"

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="subjects")
    rule = models.CharField(max_length=64)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    object_id = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["rule", "kind", "object_id"], name="audit_alert_subject_once_per_rule")
        ]
        indexes = [models.Index(fields=["kind", "object_id"])]

    def __str__(self) -> str:
        return f"{self.kind} #{self.object_id} of alert #{self.alert_id}"


class RuleFailure(models.Model):
    """A rule that raised an exception while judging an event: logged, never hiding data in an emergency.

    Shown on the security dashboard. ``error`` is the exception's class name only (a message could
    quote data).
    """

    at = models.DateTimeField(default=timezone.now, db_index=True)
    rule = models.CharField(max_length=64, db_index=True)
    kind = models.CharField(max_length=10, choices=AlertSubject.Kind.choices)
    object_id = models.BigIntegerField(null=True)
    error = models.CharField(max_length=100)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"Rule failure #{self.pk} ({self.rule})"


class RulesCursor(models.Model):
    """How far the sealer has judged a stream with the anomaly rules (``ANOMALY_RULES_AT = "sealer"``).

    ``last_seq``: the chain ``seq`` (audit/chain.py, the sealer's own partition) of the last event
    judged. Moved in the transaction that writes that judgement's alerts, so a crash between sealing
    and judging leaves it behind and the next run judges those events (audit/detection/nearline.py).
    Not part of the trail: derived bookkeeping, like the baselines.
    """

    stream = models.CharField(max_length=16, unique=True)
    last_seq = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"Rules cursor {self.stream} at {self.last_seq}"


class ActivityBaseline(models.Model):
    """A user's or a department's usual activity, for the after-hours and bulk-browsing rules.

    Derived data, recomputed by ``manage.py scan_access`` (audit/facts.py ``baselines_refresh``) from
    the last four weeks of accesses; the inline rules read it with one small query. Not part of the
    trail (no chain): it holds counts per hour, never who was seen.
    """

    class Scope(models.TextChoices):
        USER = "user", "User"
        DEPARTMENT = "department", "Department"

    scope = models.CharField(max_length=12, choices=Scope.choices)
    scope_id = models.BigIntegerField()
    # Hours of day (0-23, local time) in which the user usually works (audit/rules.py usual_hours).
    usual_hours = models.JSONField(default=list)
    # The 95th percentile of distinct patients opened per clock hour in which they opened any.
    peak_patients_per_hour = models.PositiveIntegerField(default=0)
    events = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scope", "scope_id"], name="audit_activity_baseline_once")]

    def __str__(self) -> str:
        return f"Baseline of {self.scope} #{self.scope_id}"
