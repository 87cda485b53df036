"""The admin answers the same for an object that exists and one that does not, to whoever may not see it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib import admin
from django.test import Client

from accounts.admin_site import NoExistenceLeak
from accounts.models import User

pytestmark = pytest.mark.django_db

MISSING = 999_999


@pytest.mark.parametrize("view", ["change", "history", "delete"])
def test_compliance_cannot_tell_existing_accounts_from_missing_ones(
    view: str, client_for: Callable[[User], Client], compliance: User, physician: User
) -> None:
    client = client_for(compliance)
    existing = client.get(f"/admin/accounts/user/{physician.pk}/{view}/")
    missing = client.get(f"/admin/accounts/user/{MISSING}/{view}/")
    assert existing.status_code == missing.status_code == 403


def test_an_operator_still_gets_djangos_does_not_exist_redirect(
    client_for: Callable[[User], Client], operator: User
) -> None:
    response = client_for(operator).get(f"/admin/accounts/user/{MISSING}/change/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/"


def test_every_registered_admin_refuses_before_looking_up(
    client_for: Callable[[User], Client], compliance: User
) -> None:
    assert all(isinstance(model_admin, NoExistenceLeak) for model_admin in admin.site._registry.values())
