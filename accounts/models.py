"""Who people are: staff and patients with a role, and the departments staff work in."""

from __future__ import annotations

import secrets
import time
from base64 import b32encode
from binascii import unhexlify
from typing import Any, ClassVar
from urllib.parse import quote, urlencode

from django.conf import settings
from django.contrib.auth.models import AbstractUser, UserManager
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django_otp.models import Device, ThrottlingMixin, TimestampMixin
from django_otp.oath import TOTP

from accounts.roles import Role
from healthcrypt.crypto import blind_index
from healthcrypt.fields import RowIdentity, encrypt


class Department(models.Model):
    """A ward, service or office. Radiology and lab orders are addressed to a department."""

    class Kind(models.TextChoices):
        WARD = "ward", "Ward"
        EMERGENCY = "emergency", "Emergency"
        RADIOLOGY = "radiology", "Radiology"
        LAB = "lab", "Laboratory"
        OUTPATIENT = "outpatient", "Outpatient clinic"
        ADMINISTRATION = "administration", "Administration"

    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=120, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class HealthcryptUserManager(UserManager["User"]):
    def create_superuser(
        self, username: str, email: str | None = None, password: str | None = None, **extra_fields: Any
    ) -> User:
        # Superusers are operators: they never carry a clinical role.
        extra_fields["role"] = ""
        return super().create_superuser(username, email, password, **extra_fields)


class User(AbstractUser):
    """A person who signs in. Every non-superuser has exactly one role (accounts/roles.py)."""

    role = models.CharField(max_length=20, choices=Role.choices, blank=True)
    department = models.ForeignKey(Department, null=True, blank=True, on_delete=models.PROTECT, related_name="staff")

    objects: ClassVar[HealthcryptUserManager] = HealthcryptUserManager()

    class Meta:
        constraints = [
            # A role-less account is an operator account, and only superusers may be one.
            models.CheckConstraint(condition=Q(is_superuser=True) | ~Q(role=""), name="accounts_user_role_required"),
            # Operators hold no clinical role, so "superuser" can never be a back door to charts.
            models.CheckConstraint(condition=Q(is_superuser=False) | Q(role=""), name="accounts_superuser_has_no_role"),
        ]

    def __str__(self) -> str:
        return self.username

    @property
    def display_name(self) -> str:
        """How colleagues see this person in lists and choices: the full name, else the username."""
        return self.get_full_name() or self.get_username()

    def clean(self) -> None:
        # The same rule as the check constraints, as a form error instead of a database error.
        super().clean()
        if not self.is_superuser and not self.role:
            raise ValidationError({"role": "Every account except an operator's needs a role."})
        if self.is_superuser and self.role:
            raise ValidationError({"role": "Operators (superusers) hold no clinical role."})

    @property
    def role_label(self) -> str:
        return str(Role(self.role).label) if self.role else "Operator"


class _SettingsThrottleMixin(ThrottlingMixin):
    """django-otp's throttling (wait factor * 2^(failures-1) s after a wrong code), factor from settings."""

    class Meta:
        abstract = True

    def get_throttle_factor(self) -> int:
        return int(getattr(settings, "OTP_THROTTLE_FACTOR", 1))


def default_totp_key() -> str:
    return secrets.token_hex(20)


class TOTPDevice(RowIdentity, TimestampMixin, _SettingsThrottleMixin, Device):
    """A TOTP authenticator (RFC 6238) whose secret is encrypted at rest.

    django-otp's own ``otp_totp.TOTPDevice`` keeps the secret as plaintext hex in its table, so a
    database dump would hand out every second factor. This model has the same fields and
    behaviour (drift, tolerance, replay protection through ``last_t``, throttling) with the key in
    an encrypted field (docs/decisions/0004-sign-in.md).
    """

    key = encrypt(models.CharField(max_length=80, default=default_totp_key))
    step = models.PositiveSmallIntegerField(default=30)
    t0 = models.BigIntegerField(default=0)
    digits = models.PositiveSmallIntegerField(default=6)
    tolerance = models.PositiveSmallIntegerField(default=1)
    drift = models.SmallIntegerField(default=0)
    # The time step of the last accepted code: a code is never accepted twice.
    last_t = models.BigIntegerField(default=-1)

    class Meta(Device.Meta):
        verbose_name = "TOTP authenticator"

    def __str__(self) -> str:
        return f"TOTP device #{self.pk} of user {self.user_id}"

    @property
    def bin_key(self) -> bytes:
        return unhexlify(self.key.encode())

    def verify_token(self, token: object) -> bool:
        verify_allowed, _ = self.verify_is_allowed()
        if not verify_allowed:
            return False
        try:
            number = int(str(token).strip())
        except ValueError:
            verified = False
        else:
            totp = TOTP(self.bin_key, self.step, self.t0, self.digits, self.drift)
            totp.time = time.time()
            verified = bool(totp.verify(number, self.tolerance, self.last_t + 1))
            if verified:
                self.last_t = totp.t()
                self.drift = totp.drift
                self.throttle_reset(commit=False)
                self.set_last_used_timestamp(commit=False)
                self.save()
        if not verified:
            self.throttle_increment(commit=True)
        return verified

    @property
    def config_url(self) -> str:
        """The ``otpauth://`` URI that authenticator apps read from the QR code."""
        issuer = settings.OTP_ISSUER.replace(":", "")
        label = quote(f"{issuer}:{self.user.get_username()}")
        params = urlencode(
            {
                "secret": b32encode(self.bin_key).decode("ascii"),
                "algorithm": "SHA1",
                "digits": self.digits,
                "period": self.step,
            }
        )
        return f"otpauth://totp/{label}?{params}&issuer={quote(issuer)}"

    @property
    def base32_secret(self) -> str:
        return b32encode(self.bin_key).decode("ascii")


class RecoveryCodeDevice(TimestampMixin, _SettingsThrottleMixin, Device):
    """One-time recovery codes for a lost authenticator. Only keyed hashes of the codes are stored."""

    class Meta(Device.Meta):
        verbose_name = "recovery codes"

    def __str__(self) -> str:
        return f"Recovery codes #{self.pk} of user {self.user_id}"

    def verify_token(self, token: object) -> bool:
        verify_allowed, _ = self.verify_is_allowed()
        if not verify_allowed:
            return False
        match = self.codes.filter(code_hash=recovery_code_hash(str(token))).first()
        if match is None:
            self.throttle_increment(commit=True)
            return False
        # Single use: the code is gone the moment it works.
        match.delete()
        self.throttle_reset(commit=False)
        self.set_last_used_timestamp(commit=False)
        self.save()
        return True


class RecoveryCode(models.Model):
    device = models.ForeignKey(RecoveryCodeDevice, on_delete=models.CASCADE, related_name="codes")
    code_hash = models.CharField(max_length=64, db_index=True)

    def __str__(self) -> str:
        return f"Recovery code #{self.pk}"


def recovery_code_hash(code: str) -> str:
    """Keyed hash of a recovery code, ignoring case, spaces and hyphens."""
    cleaned = "".join(ch for ch in code if ch.isalnum()).lower()
    return blind_index(cleaned, purpose="accounts.recovery_code")
