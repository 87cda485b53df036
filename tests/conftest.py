"""Role personas (STYLE.md "Tests"): one signed-in user per role, plus an outsider and an operator.

Each persona is a user of that role in a suitable department; ``client_for(user)`` gives a test
client already signed in as them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY

from accounts.models import Department, TOTPDevice, User
from accounts.roles import Role
from accounts.services import AUTH_AT_KEY, LAST_SEEN_KEY, VERIFIED_AT_KEY
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


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    """Each test starts with an empty cache: rate-limit windows (per partner, per client address)
    must not carry over from one test to the next (on SQLite a rolled-back test's ids come back)."""
    cache.clear()


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


def totp_device(user: User) -> TOTPDevice:
    """The user's confirmed authenticator, created on first use."""
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    return device or TOTPDevice.objects.create(user=user, name="Test authenticator", confirmed=True)


def sign_in(client: Client, user: User) -> Client:
    """Put ``client`` in the state a full password + code sign-in leaves it in."""
    device = totp_device(user)
    client.force_login(user)
    session = client.session
    now = time.time()
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session[AUTH_AT_KEY] = now
    session[LAST_SEEN_KEY] = now
    session[VERIFIED_AT_KEY] = now
    session.save()
    return client


def make_step_up_stale(client: Client) -> Client:
    """The last one-time code was entered just over STEP_UP_SECONDS ago; the session itself is alive."""
    session = client.session
    session[VERIFIED_AT_KEY] = time.time() - settings.STEP_UP_SECONDS - 1
    session.save()
    return client


@pytest.fixture
def client_for(db: None) -> Callable[[User], Client]:
    """A test client already signed in (password and code) as the given user."""

    def make(user: User) -> Client:
        return sign_in(Client(), user)

    return make


@pytest.fixture
def persona(request: pytest.FixtureRequest, make_persona: Callable[..., User]) -> User:
    """Indirectly parametrised with a Role: ``@pytest.mark.parametrize("persona", Role, indirect=True)``."""
    return make_persona(Role(request.param))


# What the install itself left in audit_directchange (PostgreSQL): the schema changes of migrations
# that ran after the guards, as (table, command, verified actor or None). Checked by
# tests/audit/test_sealing.py; cleared from the database before the first test, so that every test
# starts from an empty direct-change table whatever migrations the project has.
INSTALL_DIRECT_CHANGES: list[tuple[str, str, str | None]] = []


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: object) -> None:
    from django.db import connection

    from audit.guards import ensure_maintenance_role
    from audit.models import DirectChange
    from healthcrypt.markers import verify_marker

    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        if connection.vendor != "postgresql":
            return
        for change in DirectChange.objects.order_by("id"):
            marker = verify_marker(change.actor_marker, txid=change.txid)
            INSTALL_DIRECT_CHANGES.append((change.table_name, change.command, marker.actor if marker else None))
        with connection.cursor() as cursor:
            # The test runner's maintenance switch (a test database and the maintenance role only).
            ensure_maintenance_role(cursor)
            cursor.execute("SELECT set_config('healthcrypt.audit_maintenance', 'on', false)")
            try:
                cursor.execute("DELETE FROM audit_directchange")
            finally:
                cursor.execute("SELECT set_config('healthcrypt.audit_maintenance', 'off', false)")
