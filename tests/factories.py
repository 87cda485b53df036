"""factory_boy factories. Patients are made through the service, so blind indexes are right."""

from __future__ import annotations

import datetime
import secrets
from base64 import urlsafe_b64encode
from typing import Any

import factory
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.utils import timezone

from accounts.models import Department, User
from accounts.roles import Role
from healthcrypt.crypto import Keyring
from records.models import CareAssignment, Patient
from records.services import care_assignment_create, patient_register

TEST_PASSWORD = "correct horse battery staple 42"


class DepartmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Department
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"dept-{n}")
    name = factory.Sequence(lambda n: f"Department {n}")
    kind = Department.Kind.WARD


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    role = Role.PHYSICIAN
    first_name = "Test"
    last_name = factory.Sequence(lambda n: f"Staff{n}")
    password = factory.PostGenerationMethodCall("set_password", TEST_PASSWORD)

    @factory.post_generation
    def _save(self, create: bool, extracted: Any, **kwargs: Any) -> None:
        if create:
            self.save()


class PatientFactory(factory.Factory):
    """Builds a registered patient through ``records.services.patient_register``."""

    class Meta:
        model = Patient

    mrn = factory.Sequence(lambda n: f"T{500000 + n}")
    given_name = factory.Faker("first_name")
    family_name = factory.Faker("last_name")
    # Distinct per patient (37 and 30,000 are coprime), between about 1 and 83 years old: a random
    # date could repeat within a test that registers many namesakes and trip the duplicate check.
    birth_date = factory.Sequence(lambda n: timezone.localdate() - datetime.timedelta(days=400 + (n * 37) % 30000))
    sex = "female"
    phone = "555-010-0000"

    @classmethod
    def _create(cls, model_class: type[Patient], *args: Any, **kwargs: Any) -> Patient:
        return patient_register(actor=None, **kwargs)


def assign(staff: User, patient: Patient, team_role: str = CareAssignment.TeamRole.ATTENDING) -> CareAssignment:
    """Put ``staff`` on ``patient``'s care team, starting a day ago."""
    return care_assignment_create(
        actor=None,
        staff=staff,
        patient=patient,
        team_role=team_role,
        starts_at=timezone.now() - datetime.timedelta(days=1),
    )


def column_bound_token(plaintext: str, *, context: str) -> str:
    """An hc1 token exactly as the column-bound format wrote it (AAD ``hc1:<kid>:<context>``)."""
    kid, key = Keyring.parse(settings.FIELD_ENCRYPTION_KEYS).keys[0]
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), f"hc1:{kid}:{context}".encode())
    return f"hc1:{kid}:{urlsafe_b64encode(nonce + sealed).decode()}"
