"""The read path refuses before it records or decrypts: 403 for a role too weak, 404 without a relationship.

Selectors are called directly; each refusal must leave no access event behind (nothing was shown).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from accounts.models import User
from accounts.roles import DataCategory
from audit.models import AccessEvent
from records import selectors
from records.permissions import chart_access
from tests.records.conftest import Ward

pytestmark = pytest.mark.django_db


def refused(call: Callable[[], object]) -> int:
    """The status of the AccessRefused that ``call`` raises."""
    with pytest.raises(selectors.AccessRefused) as excinfo:
        call()
    return excinfo.value.status


# --- The policy ----------------------------------------------------------------------------------


def test_a_role_without_chart_access_gets_403_and_nothing_is_recorded(ward: Ward, compliance: User) -> None:
    assert refused(lambda: selectors.chart_for(actor=compliance, patient_id=ward.treated.pk)) == 403
    assert not AccessEvent.objects.filter(actor_id=compliance.pk).exists()


def test_front_desk_gets_404_for_a_patient_that_does_not_exist(front_desk: User) -> None:
    decision = chart_access(front_desk, 987654)
    assert (decision.allowed, decision.status) == (False, 404)


def test_a_patient_cannot_open_another_patients_record(ward: Ward, patient_user: User) -> None:
    assert chart_access(patient_user, ward.treated.pk).explanation == "own_record"
    decision = chart_access(patient_user, ward.other.pk)
    assert (decision.allowed, decision.status) == (False, 404)


# --- Lists and searches ---------------------------------------------------------------------------


def test_a_role_that_cannot_search_gets_403(lab: User) -> None:
    assert refused(lambda: selectors.patient_search(actor=lab, mrn="T500000")) == 403
    assert not AccessEvent.objects.filter(actor_id=lab.pk).exists()


def test_a_search_without_terms_finds_no_one_and_records_nothing(front_desk: User) -> None:
    assert selectors.patient_search(actor=front_desk, mrn="  ", family_name="Smith") == []
    assert not AccessEvent.objects.filter(actor_id=front_desk.pk).exists()


def test_the_search_by_name_and_birth_date_is_recorded_without_its_terms(ward: Ward, front_desk: User) -> None:
    found = selectors.patient_search(
        actor=front_desk, family_name=ward.treated.family_name, birth_date=ward.treated.birth_date
    )
    assert [p.id for p in found] == [ward.treated.pk]
    search = AccessEvent.objects.get(actor_id=front_desk.pk, action="search")
    assert search.detail == {"by": "name_dob", "results": 1}
    assert AccessEvent.objects.get(actor_id=front_desk.pk, action="search_result").patient_id == ward.treated.pk


@pytest.mark.parametrize(
    ("persona", "listing"),
    [
        ("radiology", selectors.my_patients),
        ("physician", selectors.registration_list),
        ("physician", selectors.worklist),
    ],
)
def test_a_list_outside_the_role_gets_403(
    ward: Ward, persona: str, listing: Callable[..., object], request: pytest.FixtureRequest
) -> None:
    user: User = request.getfixturevalue(persona)
    assert refused(lambda: listing(actor=user)) == 403
    assert not AccessEvent.objects.filter(actor_id=user.pk).exists()


# --- Writes, downloads and the emergency path -----------------------------------------------------


def test_front_desk_cannot_add_to_the_clinical_part_of_a_chart(ward: Ward, front_desk: User) -> None:
    assert (
        selectors.check_write_access(actor=front_desk, patient_id=ward.treated.pk, category=DataCategory.DEMOGRAPHICS)
        == "registration"
    )
    status = refused(
        lambda: selectors.check_write_access(actor=front_desk, patient_id=ward.treated.pk, category=DataCategory.NOTES)
    )
    assert status == 404


def test_downloading_an_attachment_that_does_not_exist_is_404(physician: User) -> None:
    assert refused(lambda: selectors.attachment_for_download(actor=physician, attachment_id=987654)) == 404
    assert not AccessEvent.objects.filter(actor_id=physician.pk).exists()


def test_a_department_working_from_an_order_gets_no_emergency_summary(ward: Ward, radiology: User) -> None:
    # The order opens the sections the order needs; the emergency summary is not one of them.
    assert chart_access(radiology, ward.treated.pk).explanation == "order"
    assert refused(lambda: selectors.emergency_summary(actor=radiology, patient_id=ward.treated.pk)) == 404
    assert not AccessEvent.objects.filter(actor_id=radiology.pk).exists()


def test_breaking_the_glass_for_an_unknown_patient_is_404_and_unrecorded(ems: User) -> None:
    assert refused(lambda: selectors.emergency_candidate(actor=ems, patient_id=987654)) == 404
    assert not AccessEvent.objects.filter(actor_id=ems.pk).exists()


@pytest.mark.parametrize("listing", [selectors.recent_arrivals, selectors.my_active_grants])
def test_a_role_that_cannot_break_the_glass_gets_403_for_emergency_lists(
    front_desk: User, listing: Callable[..., object]
) -> None:
    assert refused(lambda: listing(actor=front_desk)) == 403
    assert not AccessEvent.objects.filter(actor_id=front_desk.pk).exists()


def test_recent_arrivals_lists_only_demographics_and_the_arrival_time(ward: Ward, ems: User) -> None:
    [arrival] = selectors.recent_arrivals(actor=ems)
    assert arrival.patient.id == ward.treated.pk
    assert arrival.arrived_at == ward.encounter.starts_at
    event = AccessEvent.objects.get(actor_id=ems.pk)
    assert (event.category, event.action, event.purpose) == ("demographics", "list", "emergency")
