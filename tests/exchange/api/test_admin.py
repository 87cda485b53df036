"""The partner registry in the admin: compliance only; private keys refused; suspend and revoke
recorded; tokens shown by hash prefix only; every change in the change history."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from auditlog.models import LogEntry
from django.test import Client
from joserfc.jwk import RSAKey

from accounts.models import User
from accounts.signals import AuthEvent
from audit.models import AuthEventRecord
from exchange.partners.models import AccessToken, DataSharing, Partner
from tests.exchange.api.conftest import public_jwks
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db

PARTNER_URLS = [
    "/admin/exchange/partner/",
    "/admin/exchange/partner/add/",
    "/admin/exchange/datasharing/",
    "/admin/exchange/accesstoken/",
]


@pytest.mark.parametrize("url", PARTNER_URLS)
def test_compliance_reaches_the_partner_admin(client_for: Callable[[User], Client], compliance: User, url: str) -> None:
    assert client_for(compliance).get(url).status_code == 200


@pytest.mark.parametrize("persona", ["physician", "security", "front_desk", "researcher", "operator"])
def test_no_one_else_reaches_the_partner_admin(
    client_for: Callable[[User], Client], persona: str, request: pytest.FixtureRequest, partner: Partner
) -> None:
    client = client_for(request.getfixturevalue(persona))
    for url in [*PARTNER_URLS, f"/admin/exchange/partner/{partner.pk}/change/"]:
        response = client.get(url)
        assert response.status_code in (302, 403), (persona, url, response.status_code)
    index = client.get("/admin/")
    assert b"/admin/exchange/" not in index.content


def _form(jwks: Any, **extra: str) -> dict[str, str]:
    return {
        "name": "Eastside Lab",
        "client_id": "eastside",
        "allowed_scopes": json.dumps(["system/Patient.rs"]),
        "rate_limit_per_minute": "60",
        "jwks": json.dumps(jwks),
        **extra,
    }


def test_compliance_registers_a_partner_with_its_public_keys(
    client_for: Callable[[User], Client], compliance: User, rsa_key: RSAKey
) -> None:
    response = client_for(compliance).post("/admin/exchange/partner/add/", _form(public_jwks(rsa_key)))
    assert response.status_code == 302, response.content[:2000]
    partner = Partner.objects.get(client_id="eastside")
    assert partner.created_by == compliance
    assert partner.status == Partner.Status.ACTIVE
    assert LogEntry.objects.get_for_object(partner).count() == 1


def test_a_jwks_with_a_private_key_is_refused_in_the_admin(
    client_for: Callable[[User], Client], compliance: User, rsa_key: RSAKey
) -> None:
    private = {"keys": [dict(rsa_key.as_dict(private=True))]}
    response = client_for(compliance).post("/admin/exchange/partner/add/", _form(private))
    assert response.status_code == 200
    assert b"private key material" in response.content
    assert not Partner.objects.filter(client_id="eastside").exists()


def test_suspend_and_reactivate_actions(
    client_for: Callable[[User], Client], compliance: User, partner: Partner
) -> None:
    client = client_for(compliance)
    url = "/admin/exchange/partner/"
    client.post(url, {"action": "suspend", "_selected_action": [partner.pk]})
    partner.refresh_from_db()
    assert partner.status == Partner.Status.SUSPENDED
    client.post(url, {"action": "reactivate", "_selected_action": [partner.pk]})
    partner.refresh_from_db()
    assert partner.status == Partner.Status.ACTIVE
    events = list(AuthEventRecord.objects.filter(actor_id=compliance.pk).values_list("event", flat=True))
    assert AuthEvent.PARTNER_SUSPENDED in events
    assert AuthEvent.PARTNER_REACTIVATED in events


def test_tokens_listed_by_hash_prefix_and_revoked(
    client_for: Callable[[User], Client], compliance: User, issue: Callable[..., str]
) -> None:
    token = issue()
    row = AccessToken.objects.get()
    client = client_for(compliance)
    page = client.get("/admin/exchange/accesstoken/").content.decode()
    assert row.hash_prefix in page
    assert row.token_hash not in page
    assert token not in page
    detail = client.get(f"/admin/exchange/accesstoken/{row.pk}/change/").content.decode()
    assert row.token_hash not in detail
    client.post("/admin/exchange/accesstoken/", {"action": "revoke", "_selected_action": [row.pk]})
    row.refresh_from_db()
    assert row.revoked_at is not None
    assert AuthEventRecord.objects.filter(event=AuthEvent.PARTNER_TOKEN_REVOKED, actor_id=compliance.pk).exists()
    # The change history of the token leaves its hash out.
    for entry in LogEntry.objects.get_for_object(row):
        assert row.token_hash not in json.dumps(entry.changes)


def test_compliance_shares_a_patient_by_id(
    client_for: Callable[[User], Client], compliance: User, partner: Partner
) -> None:
    patient = PatientFactory(family_name="Secretname")
    client = client_for(compliance)
    add = client.get("/admin/exchange/datasharing/add/")
    assert b"Secretname" not in add.content
    response = client.post(
        "/admin/exchange/datasharing/add/",
        {
            "partner": partner.pk,
            "patient": patient.pk,
            "purpose": "treatment",
            "active_from_0": "2026-01-01",
            "active_from_1": "00:00:00",
        },
    )
    assert response.status_code == 302, response.content[:3000]
    sharing = DataSharing.objects.get()
    assert sharing.created_by == compliance
    assert b"Secretname" not in client.get("/admin/exchange/datasharing/").content
