"""GET /fhir/r4/metadata and /.well-known/smart-configuration: public, and what a FHIR client needs."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def test_capability_statement_shape(client: Client) -> None:
    response = client.get("/fhir/r4/metadata")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/fhir+json"
    body = response.json()
    assert body["resourceType"] == "CapabilityStatement"
    assert body["fhirVersion"] == "4.0.1"
    assert body["kind"] == "instance"
    assert body["format"] == ["json"]
    (rest,) = body["rest"]
    assert rest["mode"] == "server"
    resources = {r["type"]: r for r in rest["resource"]}
    assert set(resources) == {"Patient", "Observation", "Condition", "MedicationRequest", "AllergyIntolerance"}
    patient = resources["Patient"]
    assert {i["code"] for i in patient["interaction"]} == {"read", "search-type"}
    assert [p["name"] for p in patient["searchParam"]] == ["identifier"]
    assert patient["operation"][0]["name"] == "everything"
    for name in ("Observation", "Condition", "MedicationRequest", "AllergyIntolerance"):
        assert [p["name"] for p in resources[name]["searchParam"]] == ["patient", "_count", "_offset"]
    (oauth,) = [e for e in rest["security"]["extension"] if e["url"] == OAUTH_URIS]
    assert oauth["extension"] == [{"url": "token", "valueUri": "http://testserver/fhir/r4/auth/token"}]
    assert rest["security"]["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"


def test_smart_configuration_shape(client: Client, settings: Any) -> None:
    settings.FHIR_BASE_URL = "https://ehr.example.org/fhir/r4"
    body = client.get("/fhir/r4/.well-known/smart-configuration").json()
    assert body["token_endpoint"] == "https://ehr.example.org/fhir/r4/auth/token"
    assert body["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert body["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
    assert body["capabilities"] == ["client-confidential-asymmetric"]
    assert "system/Patient.rs" in body["scopes_supported"]
    assert body["grant_types_supported"] == ["client_credentials"]
    metadata = client.get("/fhir/r4/metadata").json()
    assert metadata["implementation"]["url"] == "https://ehr.example.org/fhir/r4"


def test_discovery_is_get_only(client: Client) -> None:
    assert client.post("/fhir/r4/metadata").status_code == 405
    assert client.post("/fhir/r4/.well-known/smart-configuration").status_code == 405
