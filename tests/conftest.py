"""Role personas (STYLE.md "Tests"): one signed-in user per role, plus an outsider and an operator.

Each persona is a user of that role in a suitable department; ``client_for(user)`` gives a test
client already signed in as them.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client

from accounts.models import Department, User
from accounts.roles import Role
from tests.factories import DepartmentFactory, UserFactory

ROLE_DEPARTMENT_KIND = {
    Role.PHYSICIAN: Department.Kind.WARD,
    Role.NURSE: Department.Kind.WARD,
    Role.RADIOLOGY: Department.Kind.RADIOLOGY,
    Role.LAB: Department.Kind.LAB,
    Role.FRONT_DESK: Department.Kind.ADMINISTRATION,
    Role.EMS: Department.Kind.EMERGENCY,
    Role.COMPLIANCE: Department.Kind.ADMINISTRATION,
    Role.SECURITY: Department.Kind.ADMINISTRATION,
}


@pytest.fixture
def make_persona(db: None) -> Callable[..., User]:
    def make(role: Role, **kwargs: object) -> User:
        kind = ROLE_DEPARTMENT_KIND.get(role)
        department = DepartmentFactory(code=f"test-{kind}", name=f"Test {kind}", kind=kind) if kind else None
        kwargs.setdefault("username", role.value)
        kwargs.setdefault("is_staff", role == Role.COMPLIANCE)
        return UserFactory(role=role, department=department, **kwargs)

    return make


@pytest.fixture
def physician(make_persona: Callable[..., User]) -> User:
    return make_persona(Role.PHYSICIAN)


@pytest.fixture
def nurse(make_persona: Callable[..., User]) -> User:
    return make_persona(Role.NURSE)


@pytest.fixture
def radiology(make_persona: Callable[..., User]) -> User:
    return make_persona(Role.RADIOLOGY)


@pytest.fixture
def lab(make_persona: Callable[..., User]) -> User:
    return make_persona(Role.LAB)


@pytest.fixture
def front_desk(make_persona: Callable[..., User]) -> User:
    return make_persona(Role.FRONT_DESK)


@pytest.fixture
def ems(make_persona: Callable[..., User]) -> User:
    return make_persona(Role.EMS)


@pytest.fixture
def compliance(make_persona: Callable[..., User]) -> User:
    return make_persona(Role.COMPLIANCE)


@pytest.fixture
def security(make_persona: Callable[..., User]) -> User:
    return make_persona(Role.SECURITY)


@pytest.fixture
def researcher(make_persona: Callable[..., User]) -> User:
    return make_persona(Role.RESEARCHER)


@pytest.fixture
def patient_user(make_persona: Callable[..., User]) -> User:
    return make_persona(Role.PATIENT, username="patient", first_name="", last_name="")


@pytest.fixture
def outsider(make_persona: Callable[..., User]) -> User:
    """A physician with no care relationship to anyone."""
    return make_persona(Role.PHYSICIAN, username="outsider")


@pytest.fixture
def operator(db: None) -> User:
    """A superuser: operations only, no role."""
    return User.objects.create_superuser("operator", "ops@example.org", "operator password 1234")


@pytest.fixture
def client_for(db: None) -> Callable[[User], Client]:
    def make(user: User) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def persona(request: pytest.FixtureRequest, make_persona: Callable[..., User]) -> User:
    """Indirectly parametrised with a Role: ``@pytest.mark.parametrize("persona", Role, indirect=True)``."""
    return make_persona(Role(request.param))
