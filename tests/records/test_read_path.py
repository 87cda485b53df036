"""The one audited read path: policy first, then the audit record, and only then any decryption."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from accounts.models import User
from audit.models import AccessEvent
from records import selectors
from records.models import Observation
from records.services import observation_record
from records.signals import patient_data_accessed
from tests.records.conftest import Ward
from tests.records.test_chart_queries import CHART_QUERIES

pytestmark = pytest.mark.django_db


def test_chart_view_records_one_event_listing_its_sections_with_actor_and_reason(
    ward: Ward, physician: User, client_for: Callable[[User], Client]
) -> None:
    response = client_for(physician).get(reverse("records:chart", args=[ward.treated.pk]))
    assert response.status_code == 200
    assert b"Treatedsurname".upper() in response.content
    (event,) = AccessEvent.objects.filter(patient_id=ward.treated.pk, action="view")
    assert {"demographics", "observations", "notes", "medications"} <= set(event.sections)
    assert (event.actor_id, event.actor_role, event.explanation, event.purpose) == (
        physician.pk,
        "physician",
        "care_team",
        "treatment",
    )
    assert event.ip == "127.0.0.1"
    assert event.request_id


def test_audit_rows_hold_no_patient_values(ward: Ward, physician: User, client_for: Callable[[User], Client]) -> None:
    client_for(physician).get(reverse("records:chart", args=[ward.treated.pk]))
    with connection.cursor() as cursor:
        for table in ("audit_accessevent", "audit_changeevent"):
            cursor.execute(f"SELECT * FROM {table}")  # noqa: S608 - fixed table names
            dump = " ".join(str(v) for row in cursor.fetchall() for v in row)
            for value in ("Treatedsurname", "Tina", "Chest pain", "Aspirin", "Troponin"):
                assert value not in dump, (table, value)


def test_failing_audit_receiver_means_no_data_is_shown(
    ward: Ward, physician: User, client_for: Callable[[User], Client]
) -> None:
    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("audit store down")

    patient_data_accessed.connect(broken, dispatch_uid="test-broken")
    try:
        response = client_for(physician).get(reverse("records:chart", args=[ward.treated.pk]))
    finally:
        patient_data_accessed.disconnect(dispatch_uid="test-broken")
    assert response.status_code == 503
    assert b"Treatedsurname".upper() not in response.content
    assert b"could not be recorded" in response.content
    assert not AccessEvent.objects.filter(patient_id=ward.treated.pk).exists()


def test_selector_refuses_before_recording_or_decrypting(ward: Ward, outsider: User) -> None:
    with pytest.raises(selectors.AccessRefused) as excinfo:
        selectors.chart_for(actor=outsider, patient_id=ward.treated.pk)
    assert excinfo.value.status == 404
    assert not AccessEvent.objects.exists()


def test_nonexistent_and_untreated_patients_look_the_same(
    ward: Ward, physician: User, client_for: Callable[[User], Client]
) -> None:
    client = client_for(physician)
    missing = client.get(reverse("records:chart", args=[999_999]))
    untreated = client.get(reverse("records:chart", args=[ward.other.pk]))
    assert missing.status_code == untreated.status_code == 404
    assert missing.content.replace(b"999999", b"").count(b"nothing that you may see") == 1
    assert b"Othersurname".upper() not in untreated.content


@pytest.mark.parametrize("count", [10, 300])
def test_chart_page_query_count_does_not_grow_with_observations(
    ward: Ward,
    nurse: User,
    physician: User,
    client_for: Callable[[User], Client],
    django_assert_max_num_queries: Callable[..., Any],
    count: int,
) -> None:
    for i in range(count):
        observation_record(
            actor=nurse,
            patient_id=ward.treated.pk,
            category=Observation.Category.VITAL_SIGNS,
            display="Heart rate",
            value=str(60 + i % 40),
            unit="/min",
        )
    client = client_for(physician)
    # Where each query comes from: tests/records/test_chart_queries.py.
    with django_assert_max_num_queries(CHART_QUERIES):
        response = client.get(reverse("records:chart", args=[ward.treated.pk]))
    assert response.status_code == 200
    assert response.context["chart"].observations_page.total == count


def test_chart_pages_observations(
    ward: Ward, nurse: User, physician: User, client_for: Callable[[User], Client]
) -> None:
    for i in range(120):
        observation_record(
            actor=nurse,
            patient_id=ward.treated.pk,
            category="vital-signs",
            display="Heart rate",
            value=str(i),
            unit="/min",
        )
    client = client_for(physician)
    first = client.get(reverse("records:chart", args=[ward.treated.pk]))
    third = client.get(reverse("records:chart", args=[ward.treated.pk]) + "?obs_page=3")
    assert len(first.context["chart"].observations) == 50
    assert len(third.context["chart"].observations) == 20
    assert client.get(reverse("records:chart", args=[ward.treated.pk]) + "?obs_page=abc").status_code == 200


def test_search_is_recorded_without_its_terms(
    ward: Ward, front_desk: User, client_for: Callable[[User], Client]
) -> None:
    response = client_for(front_desk).post(reverse("records:search"), {"mrn": ward.treated.mrn.lower()})
    assert response.status_code == 200
    assert [p.id for p in response.context["results"].patients] == [ward.treated.pk]
    search = AccessEvent.objects.get(action="search")
    assert search.detail == {"by": "mrn", "results": 1, "page": 1}
    assert ward.treated.mrn not in str(search.detail)
    assert AccessEvent.objects.filter(action="search_result", patient_id=ward.treated.pk).count() == 1


def test_search_by_surname_and_birth_date_ignores_case_and_spaces(
    ward: Ward, front_desk: User, client_for: Callable[[User], Client]
) -> None:
    response = client_for(front_desk).post(
        reverse("records:search"),
        {"family_name": "  treatedSURNAME ", "birth_date": ward.treated.birth_date.isoformat()},
    )
    assert [p.id for p in response.context["results"].patients] == [ward.treated.pk]


def test_search_without_enough_terms_is_a_clear_400(front_desk: User, client_for: Callable[[User], Client]) -> None:
    response = client_for(front_desk).post(reverse("records:search"), {"given_name": "Anna", "birth_year": "1980"})
    assert response.status_code == 400
    assert b"Enter an MRN, or a surname" in response.content


def test_patient_list_records_each_patient_shown(
    ward: Ward, physician: User, client_for: Callable[[User], Client]
) -> None:
    response = client_for(physician).get(reverse("records:my_patients"))
    assert [p.id for p in response.context["patients"]] == [ward.treated.pk]
    assert AccessEvent.objects.filter(action="list", patient_id=ward.treated.pk, actor_id=physician.pk).exists()
    assert not AccessEvent.objects.filter(patient_id=ward.other.pk).exists()
