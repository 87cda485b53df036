"""``GET /fhir/r4/metadata`` (the CapabilityStatement) and ``/.well-known/smart-configuration``:
public, so that a partner's FHIR client can discover how to authenticate."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse

from exchange.api.assertion import ALGORITHMS
from exchange.api.responses import api_methods, fhir_response
from exchange.api.token import api_base_url, token_url
from exchange.partners.scopes import RESOURCE_TYPES, all_scopes

FHIR_VERSION = "4.0.1"
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
# The date of this statement's content; change it with the statement.
STATEMENT_DATE = "2026-12-06"


def _search_param(name: str, kind: str, doc: str) -> dict[str, str]:
    return {"name": name, "type": kind, "documentation": doc}


def _resources() -> list[dict[str, Any]]:
    patient = {
        "type": "Patient",
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "searchParam": [_search_param("identifier", "token", "urn:healthcrypt:mrn|MRN: the medical record number")],
        "operation": [
            {"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}
        ],
    }
    by_patient = [
        {
            "type": resource,
            "interaction": [{"code": "search-type"}],
            "searchParam": [
                _search_param("patient", "reference", "The patient, Patient/{id} (required)"),
                _search_param("_count", "number", "Page size, 1 to 200 (default 50); follow the next link"),
                _search_param("_offset", "number", "Where the page starts (from the links)"),
            ],
        }
        for resource in RESOURCE_TYPES
        if resource != "Patient"
    ]
    return [patient, *by_patient]


def capability_statement(request: HttpRequest) -> dict[str, Any]:
    """The CapabilityStatement of the partner API: what it serves and how to get a token."""
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": STATEMENT_DATE,
        "kind": "instance",
        "publisher": str(getattr(settings, "FHIR_PUBLISHER", "Healthcrypt")),
        "software": {"name": "Healthcrypt"},
        "implementation": {"description": "Healthcrypt partner API (read-only)", "url": api_base_url(request)},
        "fhirVersion": FHIR_VERSION,
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "cors": False,
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "extension": [{"url": OAUTH_URIS, "extension": [{"url": "token", "valueUri": token_url(request)}]}],
                    "description": "SMART Backend Services: client_credentials with a private_key_jwt "
                    "client assertion (RS384 or ES384); bearer tokens of at most five minutes.",
                },
                "resource": _resources(),
            }
        ],
    }


@login_not_required
@api_methods("GET")
def metadata(request: HttpRequest) -> HttpResponse:
    return fhir_response(capability_statement(request))


@login_not_required
@api_methods("GET")
def smart_configuration(request: HttpRequest) -> HttpResponse:
    """SMART App Launch's discovery document, with what a backend service needs."""
    return JsonResponse(
        {
            "token_endpoint": token_url(request),
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
            "grant_types_supported": ["client_credentials"],
            "scopes_supported": all_scopes(),
            "capabilities": ["client-confidential-asymmetric"],
        }
    )
