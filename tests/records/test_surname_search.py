"""Search by surname (issue 10): normalised blind indexes, narrowing, paging by POST, per-row access.

The search finds by surname alone (accents, case, hyphens and apostrophes do not matter), narrows by
given name and birth year or date, pages and sorts by posting its terms again (no name in any URL),
and says per row whether the user may open the record: never an "Open" link to a 404; a button to
break the glass for roles that have it.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from django.apps import apps
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from accounts.roles import Role
from audit.models import AccessEvent
from records import selectors
from records.crypto import family_name_index, given_name_index, normalise_name
from records.models import BreakGlassGrant, Patient
from records.permissions import chart_access, openable_charts
from records.services import patient_update_demographics
from tests.factories import PatientFactory, assign
from tests.records.conftest import Ward

pytestmark = pytest.mark.django_db

SEARCH = "records:search"


def found(response: Any) -> list[int]:
    return [p.id for p in response.context["results"].patients]


@pytest.fixture
def nunez(physician: User) -> list[Patient]:
    """Three Núñez (one the physician cares for), and a Nunes who must never match."""
    people = [
        PatientFactory(family_name="Núñez", given_name="Ana", birth_date=datetime.date(1980, 3, 1)),
        PatientFactory(family_name="NUNEZ", given_name="Bruno", birth_date=datetime.date(1975, 6, 2)),
        PatientFactory(family_name="nuñez", given_name="Ána María", birth_date=datetime.date(1980, 9, 9)),
    ]
    PatientFactory(family_name="Nunes", given_name="Ana", birth_date=datetime.date(1980, 3, 1))
    assign(physician, people[0])
    return people


# --- Normalisation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("Núñez", "nunez"),
        ("  O'Brien ", "OBrien"),
        ("O\u2019Brien", "o'brien"),
        ("Smith-Jones", "smith  jones"),
        ("Smith\u2013Jones", "SMITH JONES"),
        ("Øster\u00dfund", "ostersSund"),
        ("\uff2d\u00fcller", "muller"),  # a full-width M (NFKD) and an umlaut
    ],
)
def test_names_typed_differently_normalise_alike(typed: str, stored: str) -> None:
    assert normalise_name(typed) == normalise_name(stored)
    assert family_name_index(typed) == family_name_index(stored)


def test_different_names_stay_different() -> None:
    assert family_name_index("Nunez") != family_name_index("Nunes")
    assert family_name_index("Ana") != given_name_index("Ana")  # separate index spaces


def test_demographics_edit_keeps_the_name_indexes_right(front_desk: User) -> None:
    patient = PatientFactory(family_name="Before", given_name="Bea")
    patient_update_demographics(actor=front_desk, patient_id=patient.pk, family_name="Áfter", given_name="Zoë")
    patient.refresh_from_db()
    assert patient.family_name_index == family_name_index("after")
    assert patient.given_name_index == given_name_index("zoe")


@pytest.mark.django_db(transaction=True)
def test_the_migration_indexes_existing_rows_with_the_new_normalisation() -> None:
    import importlib

    patient = PatientFactory(family_name="Dúrand-Lévy", given_name="Élodie")
    # As before the migration: the surname indexed the old way, no given-name index.
    Patient.objects.filter(pk=patient.pk).update(family_name_index="old", given_name_index="")
    module = importlib.import_module("records.migrations.0007_name_search_indexes")
    module.reindex_names(apps, SimpleNamespace(connection=connection))
    patient.refresh_from_db()
    assert patient.family_name_index == family_name_index("durand levy")
    assert patient.given_name_index == given_name_index("elodie")


# --- Finding --------------------------------------------------------------------------------------


def test_surname_alone_finds_everyone_with_it_whatever_the_accents_and_case(
    nunez: list[Patient], front_desk: User, client_for: Callable[[User], Client]
) -> None:
    response = client_for(front_desk).post(reverse(SEARCH), {"family_name": "nunez"})
    assert response.status_code == 200
    assert sorted(found(response)) == sorted(p.pk for p in nunez)


def test_given_name_narrows(nunez: list[Patient], front_desk: User, client_for: Callable[[User], Client]) -> None:
    response = client_for(front_desk).post(reverse(SEARCH), {"family_name": "NÚÑEZ", "given_name": "ana maria"})
    assert found(response) == [nunez[2].pk]


def test_birth_year_narrows(nunez: list[Patient], front_desk: User, client_for: Callable[[User], Client]) -> None:
    response = client_for(front_desk).post(reverse(SEARCH), {"family_name": "Nunez", "birth_year": "1980"})
    assert sorted(found(response)) == sorted([nunez[0].pk, nunez[2].pk])
    response = client_for(front_desk).post(reverse(SEARCH), {"family_name": "Nunez", "birth_date": "1975-06-02"})
    assert found(response) == [nunez[1].pk]


def test_results_sort_by_a_column_key_both_ways(
    nunez: list[Patient], front_desk: User, client_for: Callable[[User], Client]
) -> None:
    client = client_for(front_desk)
    oldest_first = found(client.post(reverse(SEARCH), {"family_name": "Nunez", "sort": "born"}))
    newest_first = client.post(reverse(SEARCH), {"family_name": "Nunez", "sort": "-born"})
    assert oldest_first == [nunez[1].pk, nunez[0].pk, nunez[2].pk]
    assert found(newest_first) == oldest_first[::-1]
    assert re.search(r'aria-sort="descending"><button[^>]*name="sort" value="born"', newest_first.content.decode())
    by_name = found(client.post(reverse(SEARCH), {"family_name": "Nunez"}))
    assert by_name == [nunez[0].pk, nunez[2].pk, nunez[1].pk]  # Ana, Ana Maria, Bruno
    by_mrn = found(client.post(reverse(SEARCH), {"family_name": "Nunez", "sort": "-mrn"}))
    assert by_mrn == [p.pk for p in sorted(nunez, key=lambda p: p.mrn, reverse=True)]


@pytest.mark.parametrize(
    ("terms", "message"),
    [
        ({}, "Enter an MRN, or a surname"),
        ({"family_name": "N"}, "at least 2 letters"),
        ({"family_name": " - ' "}, "Enter an MRN, or a surname"),
        ({"family_name": "Nunez", "birth_year": "abc"}, "Enter a whole number"),
        ({"family_name": "Nunez", "birth_year": "3000"}, "cannot be in the future"),
        ({"family_name": "Nunez", "birth_year": "1980", "birth_date": "1975-06-02"}, "disagree"),
    ],
)
def test_bad_input_is_a_clear_400(
    terms: dict[str, str], message: str, front_desk: User, client_for: Callable[[User], Client]
) -> None:
    response = client_for(front_desk).post(reverse(SEARCH), terms)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not AccessEvent.objects.filter(actor_id=front_desk.pk).exists()


@pytest.mark.parametrize(("page", "sort"), [("-1", "family_name_index"), ("x" * 9, "-"), ("999", "-name")])
def test_a_page_or_sort_that_is_not_offered_falls_back_instead_of_failing(
    page: str, sort: str, nunez: list[Patient], front_desk: User, client_for: Callable[[User], Client]
) -> None:
    response = client_for(front_desk).post(reverse(SEARCH), {"family_name": "Nunez", "page": page, "sort": sort})
    assert response.status_code == 200
    assert len(found(response)) == 3
    assert response.context["results"].page.number == 1


def test_a_surname_too_common_to_browse_asks_for_more(
    monkeypatch: pytest.MonkeyPatch, nunez: list[Patient], front_desk: User, client_for: Callable[[User], Client]
) -> None:
    monkeypatch.setattr("records.selectors.search.SEARCH_SCAN_LIMIT", 2)
    response = client_for(front_desk).post(reverse(SEARCH), {"family_name": "Nunez"})
    assert response.status_code == 200
    assert response.context["results"].too_many
    assert b"Add a given name or a birth year" in response.content
    assert not AccessEvent.objects.filter(action="search_result").exists()
    assert AccessEvent.objects.get(action="search").detail["too_many"] is True


# --- Paging without identifiers in URLs ----------------------------------------------------------


def test_paging_posts_the_terms_again_and_no_url_carries_them(
    physician: User, client_for: Callable[[User], Client]
) -> None:
    many = [PatientFactory(family_name="Pagewell", given_name=f"G{n:02d}") for n in range(45)]
    client = client_for(physician)
    first = client.post(reverse(SEARCH), {"family_name": "pagewell"})
    html = first.content.decode()
    assert first.context["results"].page.num_pages == 3
    # The pager is a button of a posted form, not a link with the terms.
    assert re.search(r'<button type="submit" form="search-page" name="page" value="2"', html)
    assert re.search(r'<form method="post" action="/patients/search/" id="search-page"', html)
    second = client.post(reverse(SEARCH), {"family_name": "pagewell", "page": "2"})
    third = client.post(reverse(SEARCH), {"family_name": "pagewell", "page": "3"})
    shown = found(first) + found(second) + found(third)
    assert sorted(shown) == sorted(p.pk for p in many)
    assert len(found(first)) == selectors.SEARCH_PER_PAGE
    for response in (first, second, third):
        assert response.request["PATH_INFO"] == "/patients/search/"
        assert not response.request.get("QUERY_STRING")
        for url in re.findall(r'(?:href|action)="([^"]*)"', response.content.decode()):
            assert "pagewell" not in url.lower(), url
    # Every patient shown, and only those, was recorded as a search result, page by page.
    results = AccessEvent.objects.filter(actor_id=physician.pk, action="search_result")
    assert sorted(results.values_list("patient_id", flat=True)) == sorted(shown)
    searches = AccessEvent.objects.filter(actor_id=physician.pk, action="search").order_by("id")
    assert [e.detail["page"] for e in searches] == [1, 2, 3]
    assert all("pagewell" not in str(e.detail).lower() for e in searches)


def test_a_page_of_search_results_costs_a_bounded_number_of_queries(
    physician: User, client_for: Callable[[User], Client], django_assert_max_num_queries: Any
) -> None:
    client = client_for(physician)
    for n in range(3):
        PatientFactory(family_name="Countwell", given_name=f"A{n}")
    with django_assert_max_num_queries(40) as few:
        client.post(reverse(SEARCH), {"family_name": "countwell"})
    for n in range(40):
        PatientFactory(family_name="Countwell", given_name=f"B{n}")
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.post(reverse(SEARCH), {"family_name": "countwell"})
    assert len(found(response)) == selectors.SEARCH_PER_PAGE


# --- What each role may open ----------------------------------------------------------------------


def test_a_physician_sees_open_only_for_their_patient_and_break_the_glass_for_the_rest(
    nunez: list[Patient], physician: User, client_for: Callable[[User], Client]
) -> None:
    client = client_for(physician)
    response = client.post(reverse(SEARCH), {"family_name": "Nunez"})
    html = response.content.decode()
    rows = {row.patient.id: row.may_open for row in response.context["results"].rows}
    assert rows == {nunez[0].pk: True, nunez[1].pk: False, nunez[2].pk: False}
    assert f'href="{reverse("records:chart", args=[nunez[0].pk])}"' in html
    for stranger in nunez[1:]:
        assert f'href="{reverse("records:chart", args=[stranger.pk])}"' not in html
        assert f'href="{reverse("records:emergency_request", args=[stranger.pk])}"' in html
    assert html.count("No care relationship") == 2
    # The offered request page opens (this session found the patient) ...
    assert client.get(reverse("records:emergency_request", args=[nunez[1].pk])).status_code == 200
    # ... and the chart itself, asked for by URL, is still a 404.
    assert client.get(reverse("records:chart", args=[nunez[1].pk])).status_code == 404


def test_a_nurse_opening_a_result_without_care_by_url_gets_404(
    nunez: list[Patient], nurse: User, client_for: Callable[[User], Client]
) -> None:
    client = client_for(nurse)
    response = client.post(reverse(SEARCH), {"family_name": "Nunez"})
    assert not any(row.may_open for row in response.context["results"].rows)
    assert client.get(reverse("records:chart", args=[nunez[0].pk])).status_code == 404


def test_the_front_desk_opens_registrations_and_is_never_offered_break_the_glass(
    nunez: list[Patient], front_desk: User, client_for: Callable[[User], Client]
) -> None:
    response = client_for(front_desk).post(reverse(SEARCH), {"family_name": "Nunez"})
    html = response.content.decode()
    assert all(row.may_open for row in response.context["results"].rows)
    for p in nunez:
        assert f'href="{reverse("records:registration_detail", args=[p.pk])}"' in html
    assert "/emergency/" not in html
    assert "No care relationship" not in html


def test_ems_opens_only_under_a_grant(nunez: list[Patient], ems: User, client_for: Callable[[User], Client]) -> None:
    now = timezone.now()
    BreakGlassGrant.objects.create(
        user=ems,
        patient=nunez[1],
        reason=BreakGlassGrant.Reason.EMERGENCY_TREATMENT,
        explanation="Found unconscious at the scene",
        granted_at=now - datetime.timedelta(minutes=5),
        expires_at=now + datetime.timedelta(minutes=55),
    )
    response = client_for(ems).post(reverse(SEARCH), {"family_name": "Nunez"})
    rows = {row.patient.id: row.may_open for row in response.context["results"].rows}
    assert rows == {nunez[0].pk: False, nunez[1].pk: True, nunez[2].pk: False}


@pytest.mark.parametrize("role", [Role.PHYSICIAN, Role.NURSE, Role.RADIOLOGY, Role.FRONT_DESK, Role.EMS, Role.PATIENT])
def test_openable_charts_agrees_with_chart_access(
    role: Role, ward: Ward, make_persona: Callable[..., User], nunez: list[Patient]
) -> None:
    user = User.objects.filter(role=role).first() or make_persona(role)
    ids = [ward.treated.pk, ward.other.pk, *(p.pk for p in nunez), 999_999]
    assert openable_charts(user, ids) == {i for i in ids if chart_access(user, i).allowed}


def test_a_role_that_cannot_search_is_refused(lab: User) -> None:
    with pytest.raises(selectors.AccessRefused) as refused:
        selectors.patient_find(actor=lab, family_name="Nunez")
    assert refused.value.status == 403


def test_an_empty_search_finds_no_one_and_records_nothing(front_desk: User) -> None:
    assert selectors.patient_find(actor=front_desk, family_name=" ' ").rows == ()
    assert not AccessEvent.objects.filter(actor_id=front_desk.pk).exists()
