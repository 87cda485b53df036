"""The researcher row against every URL of the application: identified data is never reachable.

Every route (walked from the URL configuration, so a new one is checked without being listed) answers
a signed-in researcher with 403 or 404, by GET and by POST, except the short list of pages that are
theirs: their own account pages and the researcher pages under /research/. Those pages in turn are
refused to every other role, compliance's review excepted (tests/research/test_pages.py).
"""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.roles import Role
from tests.healthcrypt.test_login_required import ALL_URLS, BEARER_URL_NAMES, PUBLIC_URL_NAMES, sample_path

pytestmark = pytest.mark.django_db

# A researcher's own pages: the dashboard and their account, and the research pages (no patient data).
RESEARCHER_URL_NAMES = {
    "accounts:dashboard",
    "accounts:logout",
    "accounts:password_change",
    "accounts:step_up",
    "accounts:enrol",
    "accounts:login_code",
    "admin:logout",  # signs anyone out, shows nothing
    "research:requests",
    "research:request_new",
    "research:request",
    "research:download_prepare",
    "research:download",
}
CHECKED = [u for u in ALL_URLS if u[0] not in PUBLIC_URL_NAMES | BEARER_URL_NAMES | RESEARCHER_URL_NAMES]


def test_the_researchers_own_pages_all_exist() -> None:
    assert {name for name, _ in ALL_URLS} >= RESEARCHER_URL_NAMES


def test_the_walk_checks_the_identified_pages() -> None:
    names = {name for name, _ in CHECKED}
    assert {
        "records:chart",
        "records:search",
        "records:my_patients",
        "records:emergency",
        "records:emergency_summary",
        "records:attachment_download",
        "research:review",
        "admin:index",
        "admin:audit_accessevent_changelist",
        "security:alerts",
    } <= names


@pytest.mark.parametrize(("name", "route"), CHECKED)
def test_a_researcher_is_refused_everywhere_else(make_persona, client_for, name: str, route: str) -> None:
    client: Client = client_for(make_persona(Role.RESEARCHER))
    path = sample_path(route)
    for method in ("get", "post"):
        response = getattr(client, method)(path)
        if response.status_code == 405:
            continue
        if response.status_code == 302 and name.startswith("admin:"):
            # The admin sends a user who may not use it to its sign-in page, which shows nothing.
            assert response["Location"].startswith("/admin/login/"), (name, response["Location"])
            continue
        assert response.status_code in (403, 404), f"{name} ({method.upper()} {path}) answered {response.status_code}"
