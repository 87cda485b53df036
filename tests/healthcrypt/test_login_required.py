"""Every URL requires a signed-in user, except an explicit, short list of public ones."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

pytestmark = pytest.mark.django_db

# Public on purpose: signing in, the load balancer's health check, and the admin's own sign-in
# (which only sends people to the same sign-in rules); the partner API's discovery documents and
# token endpoint (a partner signs in with its key there; tests/exchange/api/).
PUBLIC_URL_NAMES = {
    "accounts:login",
    "healthz",
    "admin:login",
    "fhir:metadata",
    "fhir:smart-configuration",
    "fhir:token",
    "fhir:not-found",  # any other path under /fhir/r4/: an OperationOutcome 404, no data
    "hospital-jwks",
}
# The partner API's resources: no session, a bearer token instead; anonymous callers get a 401.
BEARER_URL_NAMES = {
    "fhir:patient-read",
    "fhir:patient-search",
    "fhir:patient-search-post",
    "fhir:patient-everything",
    "fhir:observation-search",
    "fhir:condition-search",
    "fhir:medicationrequest-search",
    "fhir:allergyintolerance-search",
}


def walk(patterns: list[object], prefix: str = "", namespace: str = "") -> Iterator[tuple[str, str]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            ns = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from walk(pattern.url_patterns, prefix + str(pattern.pattern), ns)
        elif isinstance(pattern, URLPattern):
            yield f"{namespace}{pattern.name or ''}", prefix + str(pattern.pattern)


def sample_path(route: str) -> str:
    """Turn a route or regex into a concrete path with harmless sample values."""
    path = re.sub(r"<(?:int:)?[a-z_]*(?:id|pk)>", "1", route)
    path = re.sub(r"<[^>]+>", "x", path)
    path = re.sub(r"\(\?P<[^>]+>[^)]*\)", "1", path)
    path = path.replace("^", "").replace("$", "").replace("\\Z", "").replace("\\", "")
    return "/" + path


ALL_URLS = sorted(set(walk(get_resolver().url_patterns)))


def test_the_walk_finds_the_urls_it_should() -> None:
    names = {name for name, _ in ALL_URLS}
    assert {"accounts:dashboard", "accounts:logout", "admin:index", "healthz"} <= names


@pytest.mark.parametrize(("name", "route"), [u for u in ALL_URLS if u[0] in BEARER_URL_NAMES])
def test_the_partner_apis_resources_refuse_a_caller_without_a_bearer_token(
    client: Client, name: str, route: str
) -> None:
    kwargs = {"patient_id": "x"} if "<str:patient_id>" in route else {}
    send = client.post if name == "fhir:patient-search-post" else client.get
    response = send(reverse(name, kwargs=kwargs))  # sample_path would drop "$" of $everything
    assert response.status_code == 401, name
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["resourceType"] == "OperationOutcome"


def test_every_bearer_route_is_found_by_the_walk() -> None:
    assert {name for name, _ in ALL_URLS} >= BEARER_URL_NAMES


@pytest.mark.parametrize(
    ("name", "route"), [u for u in ALL_URLS if u[0] not in PUBLIC_URL_NAMES and u[0] not in BEARER_URL_NAMES]
)
def test_anonymous_request_is_sent_to_sign_in(client: Client, name: str, route: str) -> None:
    path = sample_path(route)
    response = client.get(path)
    if response.status_code == 404:
        # Admin URLs for objects that do not exist, or unknown apps, still never show data.
        assert b"admin" in path.encode()
        return
    assert response.status_code in (302, 405), f"{name} ({path}) answered {response.status_code}"
    if response.status_code == 302:
        location = response["Location"]
        assert location.startswith(reverse("accounts:login")) or location.startswith(reverse("admin:login")), location
