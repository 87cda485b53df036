from __future__ import annotations

import pytest
from django.db import IntegrityError

from accounts.models import User
from accounts.roles import Role

pytestmark = pytest.mark.django_db


def test_staff_account_without_role_is_refused_by_the_database() -> None:
    with pytest.raises(IntegrityError):
        User.objects.create_user("norole", password="a long enough password")


def test_superuser_with_a_clinical_role_is_refused_by_the_database() -> None:
    with pytest.raises(IntegrityError):
        User.objects.create_user("root", password="x" * 20, role=Role.PHYSICIAN, is_superuser=True)


def test_create_superuser_makes_a_role_less_operator() -> None:
    operator = User.objects.create_superuser("ops", "ops@example.org", "an operator password 99")
    assert operator.role == ""
    assert operator.role_label == "Operator"


def test_role_label_is_human_readable() -> None:
    assert User(role=Role.FRONT_DESK).role_label == "Front desk"
