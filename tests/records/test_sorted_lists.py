"""Patient lists (issue 10): registrations newest first, lists sorted by a column key in the URL
(never a value), headers that toggle direction with aria-sort, the sort kept across pages."""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import User
from tests.factories import PatientFactory, assign

pytestmark = pytest.mark.django_db


def shown(response: Any) -> list[int]:
    return [p.id for p in response.context["patients"]]


def test_recent_registrations_list_the_newest_first(front_desk: User, client_for: Callable[[User], Client]) -> None:
    people = [PatientFactory() for _ in range(3)]
    client = client_for(front_desk)
    assert shown(client.get(reverse("records:registrations"))) == [p.pk for p in reversed(people)]
    oldest_first = client.get(reverse("records:registrations"), {"sort": "registered"})
    assert shown(oldest_first) == [p.pk for p in people]
    assert 'aria-sort="ascending"><a href="?sort=-registered">' in oldest_first.content.decode()


def test_registrations_offer_no_sort_that_needs_decrypting(
    front_desk: User, client_for: Callable[[User], Client]
) -> None:
    people = [PatientFactory(family_name=name) for name in ("Alpha", "Charlie", "Bravo")]
    response = client_for(front_desk).get(reverse("records:registrations"), {"sort": "name"})
    assert shown(response) == [p.pk for p in reversed(people)]  # ignored: still newest first
    assert 'href="?sort=name"' not in response.content.decode()


def test_my_patients_sort_by_name_and_birth_date_both_ways(
    physician: User, client_for: Callable[[User], Client]
) -> None:
    people = [
        PatientFactory(family_name="Órla", given_name="B", birth_date=datetime.date(1990, 1, 1)),
        PatientFactory(family_name="adams", given_name="C", birth_date=datetime.date(1950, 1, 1)),
        PatientFactory(family_name="Martin", given_name="A", birth_date=datetime.date(1970, 1, 1)),
    ]
    for p in people:
        assign(physician, p)
    client = client_for(physician)
    by_name = client.get(reverse("records:my_patients"))
    assert shown(by_name) == [people[1].pk, people[2].pk, people[0].pk]
    html = by_name.content.decode()
    assert 'aria-sort="ascending"><a href="?sort=-name">Patient</a>' in html
    assert 'aria-sort="none"><a href="?sort=born">Born</a>' in html
    assert shown(client.get(reverse("records:my_patients"), {"sort": "-name"})) == [
        people[0].pk,
        people[2].pk,
        people[1].pk,
    ]
    youngest_first = [people[0].pk, people[2].pk, people[1].pk]
    assert shown(client.get(reverse("records:my_patients"), {"sort": "-born"})) == youngest_first
    # An unknown key is ignored (the default order), never an error.
    assert client.get(reverse("records:my_patients"), {"sort": "family_name"}).status_code == 200


def test_paging_a_sorted_list_keeps_its_sort_and_its_query_count(
    physician: User, client_for: Callable[[User], Client], django_assert_max_num_queries: Any
) -> None:
    for n in range(30):
        assign(physician, PatientFactory(family_name=f"Listed{n:02d}"))
    client = client_for(physician)
    with django_assert_max_num_queries(30):
        first = client.get(reverse("records:my_patients"), {"sort": "-name"})
    html = first.content.decode()
    assert re.search(r'href="\?page=2&amp;sort=-name"', html)
    second = client.get(reverse("records:my_patients"), {"sort": "-name", "page": "2"})
    names = [p.family_name for p in first.context["patients"]] + [p.family_name for p in second.context["patients"]]
    assert names == sorted(names, reverse=True)
    assert len(names) == 30


def test_staff_choices_show_full_names_falling_back_to_the_username(front_desk: User) -> None:
    from records.forms import AdmitForm, AssignForm
    from tests.factories import UserFactory

    UserFactory(username="dr_named", role="physician", first_name="Ada", last_name="Lovelace")
    UserFactory(username="dr_nameless", role="physician", first_name="", last_name="")
    for field in (AssignForm().fields["staff"], AdmitForm().fields["attending"]):
        labels = [label for _value, label in field.choices]
        assert "Ada Lovelace" in labels
        assert "dr_named" not in labels
        assert "dr_nameless" in labels


def test_the_registration_page_names_the_care_team_and_the_choices_by_full_name(
    front_desk: User, client_for: Callable[[User], Client]
) -> None:
    from tests.factories import UserFactory

    doctor = UserFactory(username="dr_grace", role="physician", first_name="Grace", last_name="Hopper")
    patient = PatientFactory()
    assign(doctor, patient)
    html = client_for(front_desk).get(reverse("records:registration_detail", args=[patient.pk])).content.decode()
    assert "Grace Hopper" in html
    assert "dr_grace" not in html
