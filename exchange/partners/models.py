"""The partner registry (issue 12): partners, what is shared with them, the tokens they were issued.

Compliance registers partners in the admin (DESIGN.md §3); the token endpoint (exchange/api/) issues
short-lived bearer tokens to them. A token is stored only as its SHA-256 hash, so a copy of the
database (or a backup) holds nothing a partner could present.
"""

from __future__ import annotations

import datetime
from typing import TypeGuard

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Department
from exchange.partners.jwks import thumbprints, validate_jwks
from exchange.partners.scopes import validate_scope_list
from records.models import Patient

# A client_id as partners see it: short, printable, no spaces (it travels in JWTs and URLs).
client_id_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._:-]{2,63}$", "3 to 64 letters, digits, dots, dashes, colons or underscores."
)


def is_client_id(value: object) -> TypeGuard[str]:
    """Could compliance have registered ``value`` as a client_id? Asked before a client_id typed or
    claimed by a caller is looked up (a NUL byte would reach PostgreSQL as an error)."""
    if not isinstance(value, str):
        return False
    try:
        client_id_validator(value)
    except ValidationError:
        return False
    return True


class Partner(models.Model):
    """An organisation allowed to call the partner API with its own key pair (SMART Backend Services)."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"

    name = models.CharField("organisation name", max_length=200, unique=True)
    client_id = models.CharField(max_length=64, unique=True, validators=[client_id_validator])
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    allowed_scopes = models.JSONField(
        default=list,
        validators=[validate_scope_list],
        help_text='e.g. ["system/Patient.rs", "system/Observation.rs"]',
    )
    # Requests per minute across every token of the partner (exchange/api/auth.py).
    rate_limit_per_minute = models.PositiveIntegerField(
        default=120, validators=[MinValueValidator(1), MaxValueValidator(100_000)]
    )
    jwks = models.JSONField(
        "public keys (JWKS)",
        validators=[validate_jwks],
        help_text="The partner's public keys as a JWKS: RSA (2048 bits or more) or EC P-384, each with a kid.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=["active", "suspended"]), name="exchange_partner_status"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """Each partner has keys of its own: a public key registered to another partner is refused (else
        the reader of packages could take a partner's packages for the other's, and a partner could
        sign as the other)."""
        super().clean()
        mine = thumbprints(self.jwks)
        if mine and any(
            mine & thumbprints(other) for other in Partner.objects.exclude(pk=self.pk).values_list("jwks", flat=True)
        ):
            raise ValidationError(
                {"jwks": "A key of this JWKS is registered to another partner: each partner has its own keys."}
            )

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class DataSharing(models.Model):
    """What a partner may see: one patient, or every patient with an encounter in one department."""

    class Purpose(models.TextChoices):
        TREATMENT = "treatment", "Treatment"
        PAYMENT = "payment", "Payment"
        OPERATIONS = "operations", "Health care operations"
        PUBLIC_HEALTH = "public_health", "Public health"
        RESEARCH = "research", "Research (approved)"

    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="sharings")
    patient = models.ForeignKey(Patient, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    department = models.ForeignKey(Department, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    purpose = models.CharField(max_length=32, choices=Purpose.choices)
    active_from = models.DateTimeField(default=timezone.now)
    active_until = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["partner", "-active_from"]
        verbose_name = "data sharing"
        constraints = [
            # Exactly one of patient and department: a sharing with neither would match nobody (or,
            # misread, everybody).
            models.CheckConstraint(
                condition=(Q(patient__isnull=False) & Q(department__isnull=True))
                | (Q(patient__isnull=True) & Q(department__isnull=False)),
                name="exchange_sharing_one_scope",
            ),
            models.CheckConstraint(
                condition=Q(active_until__isnull=True) | Q(active_until__gt=models.F("active_from")),
                name="exchange_sharing_period",
            ),
        ]
        indexes = [models.Index(fields=["partner", "patient"]), models.Index(fields=["partner", "department"])]

    def __str__(self) -> str:
        what = f"patient #{self.patient_id}" if self.patient_id else f"department #{self.department_id}"
        return f"{self.partner} — {what} ({self.purpose})"


class AccessToken(models.Model):
    """A bearer token issued to a partner. Only its SHA-256 hash is kept."""

    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="tokens")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list, editable=False)
    issued_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The client assertion's jti: unique per partner, so an assertion is good for one token only.
    assertion_jti = models.CharField(max_length=200, editable=False)
    assertion_expires_at = models.DateTimeField(editable=False)

    class Meta:
        ordering = ["-issued_at"]
        verbose_name = "access token"
        constraints = [
            models.UniqueConstraint(fields=["partner", "assertion_jti"], name="exchange_token_jti_once"),
            # SMART Backend Services: access tokens live five minutes at most.
            models.CheckConstraint(
                condition=Q(expires_at__lte=models.F("issued_at") + datetime.timedelta(minutes=5)),
                name="exchange_token_lifetime",
            ),
        ]

    def __str__(self) -> str:
        return f"Token {self.token_hash[:8]}… of {self.partner}"

    @property
    def hash_prefix(self) -> str:
        return self.token_hash[:12]
