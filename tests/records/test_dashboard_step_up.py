"""The dashboards' patient panels follow the pages' step-up rule: no names or MRNs on a stale step-up."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import User
from accounts.roles import Role
from audit.models import AccessEvent
from tests.conftest import make_step_up_stale
from tests.records.conftest import Ward

pytestmark = pytest.mark.django_db

# The roles whose dashboard lists the ward's treated patient (care team, ward, open orders).
LISTING_ROLES = [Role.PHYSICIAN, Role.NURSE, Role.RADIOLOGY, Role.LAB]


def persona(role: Role, make_persona: Callable[..., User]) -> User:
    return User.objects.filter(role=role).first() or make_persona(role)


@pytest.mark.parametrize("role", LISTING_ROLES)
def test_dashboard_lists_patients_after_a_fresh_code(
    role: Role, ward: Ward, make_persona: Callable[..., User], client_for: Callable[[User], Client]
) -> None:
    page = client_for(persona(role, make_persona)).get(reverse("accounts:dashboard"))
    assert page.status_code == 200
    assert ward.treated.family_name.upper() in page.content.decode()  # the name, surname in capitals


@pytest.mark.parametrize("role", [*LISTING_ROLES, Role.EMS, Role.FRONT_DESK, Role.PATIENT, Role.SECURITY])
def test_dashboard_with_a_stale_step_up_shows_no_patient_and_reads_nothing(
    role: Role, ward: Ward, make_persona: Callable[..., User], client_for: Callable[[User], Client]
) -> None:
    user = persona(role, make_persona)
    page = make_step_up_stale(client_for(user)).get(reverse("accounts:dashboard"))
    assert page.status_code == 200
    for value in (ward.treated.family_name, ward.treated.given_name, ward.treated.mrn):
        assert value.lower() not in page.content.decode().lower(), (role, value)
    assert not AccessEvent.objects.filter(actor_id=user.pk).exists()
    if role in LISTING_ROLES:
        assert reverse("accounts:step_up").encode() in page.content
