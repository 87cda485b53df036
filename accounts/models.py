"""Who people are: staff and patients with a role, and the departments staff work in."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models
from django.db.models import Q

from accounts.roles import Role


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


class HealthcryptUserManager(UserManager):
    def create_superuser(
        self, username: str, email: str | None = None, password: str | None = None, **extra_fields: object
    ) -> User:  # type: ignore[override]
        # Superusers are operators: they never carry a clinical role.
        extra_fields["role"] = ""
        return super().create_superuser(username, email, password, **extra_fields)


class User(AbstractUser):
    """A person who signs in. Every non-superuser has exactly one role (accounts/roles.py)."""

    role = models.CharField(max_length=20, choices=Role.choices, blank=True)
    department = models.ForeignKey(Department, null=True, blank=True, on_delete=models.PROTECT, related_name="staff")

    objects = HealthcryptUserManager()

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
    def role_label(self) -> str:
        return Role(self.role).label if self.role else "Operator"
