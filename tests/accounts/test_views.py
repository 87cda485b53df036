"""Sign-in, the role dashboards at /, the navigation and the admin's door."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import User
from accounts.roles import Role

pytestmark = pytest.mark.django_db

# Roles that may break the glass add one query for their active grants (and, with some, their event
# and the patients' rows).
QUERY_BUDGET = {
    Role.PHYSICIAN: 17,
    Role.NURSE: 17,
    Role.RADIOLOGY: 16,
    Role.LAB: 16,
    Role.EMS: 10,
    # The desk: its departments and today's arrivals and appointments (none here: no audit insert).
    Role.FRONT_DESK: 13,
    # Security: alert counts, the newest alerts, rule failures and the two lockout counts.
    Role.SECURITY: 14,
    # Compliance: the count of emergency grants awaiting review.
    Role.COMPLIANCE: 10,
}


def test_wrong_password_shows_a_clear_message_and_no_session(client: Client, physician: User) -> None:
    response = client.post(reverse("accounts:login"), {"username": "physician", "password": "wrong"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize("persona", list(Role), indirect=True)
def test_each_role_gets_its_own_dashboard(persona: User, client_for: Callable[[User], Client]) -> None:
    response = client_for(persona).get("/")
    assert response.status_code == 200
    assert f"accounts/dashboards/{persona.role}.html" in [t.name for t in response.templates]
    assert str(Role(persona.role).label) in response.content.decode()


@pytest.mark.parametrize("persona", list(Role), indirect=True)
def test_dashboard_needs_few_queries(
    persona: User, client_for: Callable[[User], Client], django_assert_max_num_queries: Callable[..., object]
) -> None:
    client = client_for(persona)
    # Session, user, OTP device, department and the session update, plus two savepoint pairs; roles
    # with a patient list or worklist panel add its count, ids, audit insert and rows.
    with django_assert_max_num_queries(QUERY_BUDGET.get(persona.role, 9)):
        client.get("/")


@pytest.mark.parametrize("persona", list(Role), indirect=True)
def test_navigation_shows_the_admin_only_to_compliance(persona: User, client_for: Callable[[User], Client]) -> None:
    html = client_for(persona).get("/").content.decode()
    assert ("Compliance admin" in html) == (persona.role == Role.COMPLIANCE)


def test_compliance_officer_may_enter_the_admin(compliance: User, client_for: Callable[[User], Client]) -> None:
    assert client_for(compliance).get(reverse("admin:index")).status_code == 200


@pytest.mark.parametrize("role", [r for r in Role if r != Role.COMPLIANCE])
def test_other_roles_are_kept_out_of_the_admin_even_with_is_staff(
    role: Role, make_persona: Callable[..., User], client_for: Callable[[User], Client]
) -> None:
    user = make_persona(role, is_staff=True)
    response = client_for(user).get(reverse("admin:index"), follow=True)
    assert response.redirect_chain[-1][0] == reverse("accounts:dashboard")
    assert "admin/index.html" not in [t.name for t in response.templates]


def test_operator_is_sent_to_the_admin(operator: User, client_for: Callable[[User], Client]) -> None:
    client = client_for(operator)
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:index")
    assert client.get(reverse("admin:index")).status_code == 200


def test_sign_out_needs_post(physician: User, client_for: Callable[[User], Client]) -> None:
    client = client_for(physician)
    assert client.get(reverse("accounts:logout")).status_code == 405
    response = client.post(reverse("accounts:logout"))
    assert response.status_code == 302
    assert "_auth_user_id" not in client.session


def test_dashboard_rejects_post(physician: User, client_for: Callable[[User], Client]) -> None:
    assert client_for(physician).post("/").status_code == 405


def test_pages_forbid_caching_framing_and_foreign_scripts(
    physician: User, client_for: Callable[[User], Client]
) -> None:
    response = client_for(physician).get("/")
    assert "no-store" in response["Cache-Control"]
    assert "default-src 'self'" in response["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_unknown_page_gives_the_friendly_404(physician: User, client_for: Callable[[User], Client]) -> None:
    response = client_for(physician).get("/no/such/page/")
    assert response.status_code == 404
    assert b"nothing that you may see" in response.content


def test_health_check_is_public_and_says_nothing_more_than_ok(client: Client) -> None:
    response = client.get(reverse("healthz"))
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
