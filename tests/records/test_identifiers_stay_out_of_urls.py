"""Patient identifiers typed to find someone (MRN, surname, birth date) never go in a URL.

A URL ends up in browser history, in a Referer header and in the server's access log; so every
search is a POST (with its CSRF token) whose answer shows the results. These tests search as each
role that may, then look at every path and query string the client asked for, and at every log
record written meanwhile (django.request logs the path of each 4xx), for the patient's values.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import User
from accounts.roles import Capability, Role, roles_with
from records.models import Patient
from tests.conftest import make_step_up_stale
from tests.records.conftest import Ward

pytestmark = pytest.mark.django_db


def patient_values(patient: Patient) -> list[str]:
    """What would identify the patient in a URL, as typed and as a browser would encode it."""
    born = patient.birth_date.isoformat()
    return [patient.mrn, patient.family_name, patient.given_name, born, born.replace("-", "%2D")]


def leaks(text: str, patient: Patient) -> list[str]:
    return [value for value in patient_values(patient) if value.lower() in text.lower()]


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every log record, at every level, from every logger (django.request and django.server included)."""
    caplog.set_level(logging.DEBUG)
    return caplog


def searches(ward: Ward) -> list[dict[str, str]]:
    p = ward.treated
    return [
        {"mrn": p.mrn},
        {"mrn": p.mrn.lower()},
        {"family_name": p.family_name, "birth_date": p.birth_date.isoformat()},
        {"family_name": p.family_name},  # not enough for the exact (break-the-glass) search: a 400
    ]


def page_and_sort(ward: Ward) -> list[dict[str, str]]:
    """The search page's own: a surname alone, paged and sorted (posted again), and a 1-letter surname."""
    p = ward.treated
    return [
        {"family_name": p.family_name, "page": "1", "sort": "-born"},
        {"family_name": p.family_name[:1]},  # too short: a 400, which django.request logs
    ]


@pytest.mark.parametrize("role", roles_with(Capability.SEARCH_PATIENTS))
def test_searching_puts_no_patient_value_in_any_url_or_log(
    role: Role,
    ward: Ward,
    make_persona: Callable[..., User],
    client_for: Callable[[User], Client],
    all_logs: pytest.LogCaptureFixture,
) -> None:
    user = User.objects.filter(role=role).first() or make_persona(role)
    client = client_for(user)
    responses = [client.get(reverse("accounts:dashboard")), client.get(reverse("records:search"))]
    for terms in [*searches(ward), *page_and_sort(ward)]:
        responses.append(client.post(reverse("records:search"), terms))
    found = responses[2]
    assert found.status_code == 200
    assert [p.id for p in found.context["results"].patients] == [ward.treated.pk]
    assert [r.status_code for r in responses[5:]] == [200, 200, 400]  # surname alone is enough; 1 letter is not
    # Follow the result's link, as a person would: it is addressed by the patient's id only.
    [link] = re.findall(rb'href="(/(?:emergency/)?patients/\d+/[^"]*)"', found.content)
    responses.append(client.get(link.decode()))
    # ems treats nobody here (break the glass only): its link is the break-the-glass request.
    assert link.startswith(b"/emergency/") == (role == Role.EMS)
    assert responses[-1].status_code == 200

    for response in responses:
        asked = f"{response.request['PATH_INFO']}?{response.request.get('QUERY_STRING', '')}"
        assert not leaks(asked, ward.treated), (role, asked)
        assert not leaks(response.get("Location", ""), ward.treated), role
    # The 400 went through django.request's log handler, with the path and nothing else.
    assert "Bad Request: /patients/search/" in [r.getMessage() for r in all_logs.records if r.name == "django.request"]
    assert not [r.getMessage() for r in all_logs.records if leaks(r.getMessage(), ward.treated)]


@pytest.mark.parametrize("role", roles_with(Capability.SEARCH_PATIENTS))
def test_search_forms_post_to_the_search_page(
    role: Role, make_persona: Callable[..., User], client_for: Callable[[User], Client]
) -> None:
    user = User.objects.filter(role=role).first() or make_persona(role)
    client = client_for(user)
    search_url = reverse("records:search")
    for page in (reverse("accounts:dashboard"), search_url):
        html = client.get(page).content.decode()
        forms = re.findall(r"<form\b[^>]*>", html)
        to_search = [f for f in forms if f'action="{search_url}"' in f]
        assert all('method="post"' in f for f in to_search), (page, to_search)
        assert 'name="csrfmiddlewaretoken"' in html if to_search else True


def test_a_search_by_get_is_refused_and_shows_nothing(
    ward: Ward, front_desk: User, client_for: Callable[[User], Client]
) -> None:
    """An old bookmark or a crafted link with terms in its query string finds nobody."""
    response = client_for(front_desk).get(reverse("records:search"), {"mrn": ward.treated.mrn})
    assert response.status_code == 200
    assert response.context["results"] is None
    assert not leaks(response.content.decode(), ward.treated)


def test_search_with_a_stale_step_up_carries_no_term_to_the_code_page(
    ward: Ward, front_desk: User, client_for: Callable[[User], Client], all_logs: pytest.LogCaptureFixture
) -> None:
    client = make_step_up_stale(client_for(front_desk))
    response = client.post(reverse("records:search"), {"mrn": ward.treated.mrn, "family_name": "x"})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:step_up"))
    assert not leaks(response["Location"], ward.treated)
    assert not [r.getMessage() for r in all_logs.records if leaks(r.getMessage(), ward.treated)]


@pytest.mark.parametrize("role", roles_with(Capability.BREAK_GLASS))
def test_emergency_search_puts_no_patient_value_in_any_url_or_log(
    role: Role,
    ward: Ward,
    make_persona: Callable[..., User],
    client_for: Callable[[User], Client],
    all_logs: pytest.LogCaptureFixture,
) -> None:
    user = User.objects.filter(role=role).first() or make_persona(role)
    client = client_for(user)
    responses = [client.get(reverse("records:emergency"))]
    for terms in searches(ward):
        responses.append(client.post(reverse("records:emergency_find"), terms))
    assert [p.id for p in responses[1].context["results"]] == [ward.treated.pk]
    for response in responses:
        asked = f"{response.request['PATH_INFO']}?{response.request.get('QUERY_STRING', '')}"
        assert not leaks(asked, ward.treated), (role, asked)
    assert not [r.getMessage() for r in all_logs.records if leaks(r.getMessage(), ward.treated)]
