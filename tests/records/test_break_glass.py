"""Break the glass end to end (DESIGN.md §8, issue 9): find, ask with a reason and a fresh code, the
emergency summary, the full chart, the banner, expiry, early end, and every refusal on the way."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import pytest
import time_machine
from axes.models import AccessAttempt
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from audit.models import AccessEvent, Alert
from records import breakglass
from records.db import mark_actor
from records.models import BreakGlassGrant, Encounter, Observation, Patient
from records.permissions import chart_access
from records.services import (
    RecordNotFound,
    allergy_record,
    condition_record,
    encounter_admit,
    medication_prescribe,
    observation_record,
)
from records.signals import break_glass_ended, break_glass_granted
from tests.accounts.helpers import current_code
from tests.conftest import sign_in, totp_device
from tests.factories import PatientFactory
from tests.records.conftest import Ward

pytestmark = pytest.mark.django_db

EXPLANATION = "Found unconscious after a road accident, no ID card"


def grant_url(patient: Patient) -> str:
    return reverse("records:emergency_grant", args=[patient.pk])


def find(client: Client, patient: Patient) -> Any:
    """Find the patient by MRN, as the request page needs."""
    return client.post(reverse("records:emergency_find"), {"mrn": patient.mrn})


def ask(client: Client, user: User, patient: Patient, **overrides: str) -> Any:
    """Find the patient, then post the break-the-glass form with a fresh code from the authenticator."""
    find(client, patient)
    data = {"reason": "emergency_treatment", "explanation": EXPLANATION, "otp_token": current_code(totp_device(user))}
    data.update(overrides)
    return client.post(grant_url(patient), data)


@pytest.fixture
def stranger(ward: Ward) -> Patient:
    """A patient nobody here treats, with the things an emergency summary shows."""
    patient = ward.other
    allergy_record(actor=None, patient_id=patient.pk, substance="Penicillin", reaction="Anaphylaxis", severity="severe")
    condition_record(actor=None, patient_id=patient.pk, display="Type 1 diabetes")
    medication_prescribe(actor=None, patient_id=patient.pk, display="Insulin glargine", dosage="20 units at night")
    for value, minutes in (("88", 30), ("112", 5)):
        observation_record(
            actor=None,
            patient_id=patient.pk,
            category=Observation.Category.VITAL_SIGNS,
            display="Heart rate",
            value=value,
            unit="/min",
            loinc_code="8867-4",
            effective_at=timezone.now() - datetime.timedelta(minutes=minutes),
        )
    return patient


@pytest.fixture
def ems_client(ems: User, client_for: Callable[[User], Client]) -> Client:
    return client_for(ems)


def events(**filters: Any) -> list[AccessEvent]:
    return list(AccessEvent.objects.filter(**filters).order_by("id"))


# --- Without a grant --------------------------------------------------------------------------------


def test_ems_without_a_grant_gets_404_on_the_chart_and_the_summary(ems_client: Client, stranger: Patient) -> None:
    assert ems_client.get(reverse("records:chart", args=[stranger.pk])).status_code == 404
    assert ems_client.get(reverse("records:emergency_summary", args=[stranger.pk])).status_code == 404


@pytest.mark.parametrize("name", ["emergency", "emergency_request"])
def test_role_without_break_glass_gets_403(
    name: str, front_desk: User, radiology: User, stranger: Patient, client_for: Callable[[User], Client]
) -> None:
    args = [stranger.pk] if name == "emergency_request" else []
    for user in (front_desk, radiology):
        assert client_for(user).get(reverse(f"records:{name}", args=args)).status_code == 403
    response = client_for(front_desk).post(
        grant_url(stranger), {"reason": "other", "explanation": EXPLANATION, "otp_token": "123456"}
    )
    assert response.status_code == 403
    assert not BreakGlassGrant.objects.exists()


def test_service_refuses_a_role_without_the_capability(front_desk: User, stranger: Patient) -> None:
    with pytest.raises(PermissionDenied):
        breakglass.break_glass_grant(
            actor=front_desk, patient_id=stranger.pk, reason="other", explanation=EXPLANATION, code="123456"
        )


@pytest.mark.parametrize(
    ("name", "args"),
    [("emergency_find", []), ("emergency_grant", ["patient"]), ("emergency_end", ["grant"])],
)
def test_post_only_endpoints_refuse_get(
    name: str, args: list[str], ems: User, ems_client: Client, stranger: Patient
) -> None:
    ids = {"patient": stranger.pk, "grant": 1}
    assert ems_client.get(reverse(f"records:{name}", args=[ids[a] for a in args])).status_code == 405
    assert not BreakGlassGrant.objects.exists()


# --- The journey -------------------------------------------------------------------------------------


def test_find_ask_summary_chart_banner_and_audit_trail(ems: User, ems_client: Client, stranger: Patient) -> None:
    # Find the patient by MRN, posted (never in the URL).
    response = ems_client.post(reverse("records:emergency_find"), {"mrn": stranger.mrn})
    assert response.status_code == 200
    request_url = reverse("records:emergency_request", args=[stranger.pk])
    assert request_url in response.content.decode()
    search = events(actor_id=ems.pk, action="search").pop()
    assert (search.purpose, search.detail) == ("emergency", {"by": "mrn", "results": 1})

    # The request page names the person, recorded as a demographics view.
    page = ems_client.get(request_url)
    assert page.status_code == 200
    assert "OTHERSURNAME, Omar" in page.content.decode()

    response = ask(ems_client, ems, stranger)
    assert response.status_code == 302
    assert response["Location"] == reverse("records:emergency_summary", args=[stranger.pk])
    grant = BreakGlassGrant.objects.get()
    assert (grant.user_id, grant.patient_id, grant.reason, grant.ended_at) == (
        ems.pk,
        stranger.pk,
        "emergency_treatment",
        None,
    )
    assert grant.explanation == EXPLANATION
    assert grant.expires_at - grant.granted_at == datetime.timedelta(minutes=60)

    (granted,) = events(action="break_glass")
    assert (granted.actor_id, granted.actor_role, granted.patient_id) == (ems.pk, "ems", stranger.pk)
    assert (granted.explanation, granted.purpose) == ("break_glass", "emergency")
    assert granted.detail["grant_id"] == grant.pk
    assert granted.detail["reason"] == "emergency_treatment"
    # The free text may describe the patient: never in the trail.
    assert EXPLANATION not in str(granted.detail)

    # The summary: allergies, active medications, problems, last vitals; the code just entered
    # counts as the step-up.
    summary = ems_client.get(response["Location"])
    assert summary.status_code == 200
    html = summary.content.decode()
    for text in ("Penicillin", "Insulin glargine", "Type 1 diabetes", "112", "End emergency access"):
        assert text in html
    assert ">88 " not in html  # only the last heart rate
    assert 'data-testid="break-glass-banner"' in html
    assert reverse("records:chart", args=[stranger.pk]) in html
    (seen,) = events(actor_id=ems.pk, patient_id=stranger.pk, action="view", detail__view="emergency_summary")
    # One event listing every section shown, with the grant.
    assert seen.sections == sorted(
        ["demographics", "allergies", "medications", "conditions", "observations", "encounters"]
    )
    assert (seen.explanation, seen.detail["grant_id"]) == ("break_glass", grant.pk)

    # One click to the full chart, with the banner and the grant id on every event.
    chart = ems_client.get(reverse("records:chart", args=[stranger.pk]))
    assert chart.status_code == 200
    assert 'data-testid="break-glass-banner"' in chart.content.decode()
    chart_events = events(actor_id=ems.pk, patient_id=stranger.pk, action="view", purpose="treatment")
    assert chart_events
    assert {(e.explanation, e.detail.get("grant_id")) for e in chart_events} == {("break_glass", grant.pk)}


def test_grant_never_widens_to_another_patient(ems: User, ems_client: Client, stranger: Patient, ward: Ward) -> None:
    assert ask(ems_client, ems, stranger).status_code == 302
    assert ems_client.get(reverse("records:chart", args=[ward.treated.pk])).status_code == 404
    assert ems_client.get(reverse("records:emergency_summary", args=[ward.treated.pk])).status_code == 404
    assert chart_access(ems, ward.treated.pk).status == 404


def test_grant_expires_after_break_glass_minutes(
    ems: User, ems_client: Client, stranger: Patient, settings: Any
) -> None:
    settings.BREAK_GLASS_MINUTES = 30
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        assert ask(ems_client, ems, stranger).status_code == 302
        grant = BreakGlassGrant.objects.get()
        assert grant.expires_at == start + datetime.timedelta(minutes=30)
        assert ems_client.get(reverse("records:emergency_summary", args=[stranger.pk])).status_code == 200
        clock.shift(datetime.timedelta(minutes=29))
        sign_in(ems_client, ems)  # a fresh session: only the grant's clock matters here
        assert ems_client.get(reverse("records:chart", args=[stranger.pk])).status_code == 200
        clock.shift(datetime.timedelta(minutes=1, seconds=1))
        sign_in(ems_client, ems)
        assert ems_client.get(reverse("records:chart", args=[stranger.pk])).status_code == 404
        assert ems_client.get(reverse("records:emergency_summary", args=[stranger.pk])).status_code == 404
        assert chart_access(ems, stranger.pk).status == 404
        # An expired grant cannot be ended any more; nothing changes.
        assert ems_client.post(reverse("records:emergency_end", args=[grant.pk])).status_code == 302
        grant.refresh_from_db()
        assert grant.ended_at is None


def test_end_early_closes_the_chart_and_is_recorded(ems: User, ems_client: Client, stranger: Patient) -> None:
    received: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        received.append(kwargs)

    break_glass_ended.connect(receiver, dispatch_uid="test.ended")
    try:
        assert ask(ems_client, ems, stranger).status_code == 302
        grant = BreakGlassGrant.objects.get()
        response = ems_client.post(reverse("records:emergency_end", args=[grant.pk]))
    finally:
        break_glass_ended.disconnect(dispatch_uid="test.ended")
    assert response.status_code == 302
    assert response["Location"] == reverse("records:emergency")
    grant.refresh_from_db()
    assert grant.ended_at is not None
    assert [(r["grant"].pk, r["actor"].pk) for r in received] == [(grant.pk, ems.pk)]
    assert ems_client.get(reverse("records:chart", args=[stranger.pk])).status_code == 404
    (ended,) = events(action="break_glass_end")
    assert (ended.actor_id, ended.patient_id, ended.detail["grant_id"]) == (ems.pk, stranger.pk, grant.pk)
    # Ending again is harmless and records nothing more.
    assert ems_client.post(reverse("records:emergency_end", args=[grant.pk])).status_code == 302
    assert len(events(action="break_glass_end")) == 1


def test_only_the_holder_may_end_a_grant(
    ems: User, ems_client: Client, stranger: Patient, outsider: User, client_for: Callable[[User], Client]
) -> None:
    assert ask(ems_client, ems, stranger).status_code == 302
    grant = BreakGlassGrant.objects.get()
    assert client_for(outsider).post(reverse("records:emergency_end", args=[grant.pk])).status_code == 404
    grant.refresh_from_db()
    assert grant.ended_at is None
    with pytest.raises(RecordNotFound):
        breakglass.break_glass_end(actor=outsider, grant_id=grant.pk)


def test_granted_signal_carries_the_grant_and_a_failing_receiver_undoes_it(ems: User, stranger: Patient) -> None:
    def refuse(sender: Any, **kwargs: Any) -> None:
        assert kwargs["grant"].pk is not None
        assert kwargs["actor"] == ems
        raise RuntimeError("alert could not be raised")

    break_glass_granted.connect(refuse, dispatch_uid="test.refuse")
    try:
        with pytest.raises(RuntimeError):
            breakglass.break_glass_grant(
                actor=ems,
                patient_id=stranger.pk,
                reason="unable_to_consent",
                explanation=EXPLANATION,
                code=current_code(totp_device(ems)),
            )
    finally:
        break_glass_granted.disconnect(dispatch_uid="test.refuse")
    assert not BreakGlassGrant.objects.exists()
    assert not events(action="break_glass")


# --- Bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"reason": ""}, "Choose the reason for emergency access."),
        ({"reason": "boredom"}, "Select a valid choice"),
        ({"explanation": ""}, "Say in a few words why you need this record now."),
        ({"explanation": "help"}, "at least 10 characters"),
        ({"otp_token": ""}, "Enter the 6-digit code"),
        ({"otp_token": "12ab56"}, "Enter the 6 digits"),
    ],
)
def test_incomplete_request_is_a_400_with_a_clear_message_and_no_grant(
    overrides: dict[str, str], message: str, ems: User, ems_client: Client, stranger: Patient
) -> None:
    response = ask(ems_client, ems, stranger, **overrides)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not BreakGlassGrant.objects.exists()
    assert not events(action="break_glass")


def test_wrong_code_is_refused_and_counted_toward_the_lockout(ems: User, ems_client: Client, stranger: Patient) -> None:
    good = current_code(totp_device(ems))
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    response = ask(ems_client, ems, stranger, otp_token=wrong)
    assert response.status_code == 400
    assert "That code is not right, or it has already been used" in response.content.decode()
    assert not BreakGlassGrant.objects.exists()
    assert AccessAttempt.objects.get(username="ems").failures_since_start == 1


def test_replayed_code_is_refused(ems: User, ems_client: Client, stranger: Patient) -> None:
    code = current_code(totp_device(ems))
    assert ask(ems_client, ems, stranger, otp_token=code).status_code == 302
    other = PatientFactory()
    response = ask(ems_client, ems, other, otp_token=code)
    assert response.status_code == 400
    assert "already been used" in response.content.decode()
    assert BreakGlassGrant.objects.count() == 1


def test_service_checks_reason_before_using_up_the_code(ems: User, stranger: Patient) -> None:
    code = current_code(totp_device(ems))
    with pytest.raises(ValidationError) as error:
        breakglass.break_glass_grant(actor=ems, patient_id=stranger.pk, reason="", explanation="", code=code)
    assert set(error.value.message_dict) == {"reason", "explanation"}
    # The code was not used up by the refused request.
    grant = breakglass.break_glass_grant(
        actor=ems, patient_id=stranger.pk, reason="other", explanation=EXPLANATION, code=code
    )
    assert grant.patient_id == stranger.pk


def test_unknown_patient_is_404_everywhere(ems: User, ems_client: Client) -> None:
    assert ems_client.get(reverse("records:emergency_request", args=[999_999])).status_code == 404
    response = ems_client.post(
        reverse("records:emergency_grant", args=[999_999]),
        {"reason": "other", "explanation": EXPLANATION, "otp_token": current_code(totp_device(ems))},
    )
    assert response.status_code == 404
    response = ems_client.post(reverse("records:emergency_find"), {"mrn": "NOPE-0000"})
    assert response.status_code == 404
    assert "No patient has this MRN" in response.content.decode()
    assert "NOPE-0000" not in str([e.detail for e in AccessEvent.objects.all()])
    assert not BreakGlassGrant.objects.exists()
    with pytest.raises(RecordNotFound):
        breakglass.break_glass_grant(actor=ems, patient_id=999_999, reason="other", explanation=EXPLANATION, code="1")


def test_find_needs_an_mrn_or_surname_and_birth_date(ems_client: Client) -> None:
    response = ems_client.post(reverse("records:emergency_find"), {"family_name": "Smith"})
    assert response.status_code == 400
    assert "Enter an MRN, or a surname together with a birth date." in response.content.decode()


def test_find_by_surname_and_birth_date(ems: User, ems_client: Client, stranger: Patient) -> None:
    response = ems_client.post(
        reverse("records:emergency_find"),
        {"family_name": "othersurname", "birth_date": stranger.birth_date.isoformat()},
    )
    assert response.status_code == 200
    assert reverse("records:emergency_request", args=[stranger.pk]) in response.content.decode()


def test_second_grant_while_one_is_active_is_refused(ems: User, ems_client: Client, stranger: Patient) -> None:
    assert ask(ems_client, ems, stranger).status_code == 302
    with time_machine.travel(timezone.now() + datetime.timedelta(seconds=31), tick=False):
        response = ask(ems_client, ems, stranger)
    assert response.status_code == 400
    assert "You already have emergency access to this patient." in response.content.decode()
    assert BreakGlassGrant.objects.count() == 1


# --- Physicians and nurses: the fallback -------------------------------------------------------------


def test_physician_without_a_relationship_may_break_the_glass(
    outsider: User, stranger: Patient, client_for: Callable[[User], Client]
) -> None:
    client = client_for(outsider)
    assert client.get(reverse("records:chart", args=[stranger.pk])).status_code == 404
    assert ask(client, outsider, stranger).status_code == 302
    grant = BreakGlassGrant.objects.get()
    decision = chart_access(outsider, stranger.pk)
    assert (decision.explanation, decision.grant_id) == ("break_glass", grant.pk)
    assert client.get(reverse("records:chart", args=[stranger.pk])).status_code == 200


def test_physician_with_a_care_relationship_does_not_need_the_glass(
    physician: User, ward: Ward, client_for: Callable[[User], Client]
) -> None:
    response = ask(client_for(physician), physician, ward.treated)
    assert response.status_code == 400
    assert "You already have access to this patient" in response.content.decode()
    assert not BreakGlassGrant.objects.exists()
    # The care relationship comes first: a grant would not even be looked at.
    assert chart_access(physician, ward.treated.pk).explanation == "care_team"


# --- Lists and the dashboard --------------------------------------------------------------------------


def test_recent_arrivals_list_demographics_of_the_last_day_and_is_recorded(
    ems: User, ems_client: Client, ward: Ward, stranger: Patient
) -> None:
    old = PatientFactory(family_name="Yesterdayson")
    encounter_admit(
        actor=None,
        patient_id=old.pk,
        kind=Encounter.Kind.EMERGENCY,
        department=None,
        attending=None,
        reason="Fall",
        starts_at=timezone.now() - datetime.timedelta(hours=30),
    )
    response = ems_client.get(reverse("records:emergency"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "TREATEDSURNAME, Tina" in html
    assert "YESTERDAYSON" not in html
    assert "Chest pain" not in html  # the stay's reason is clinical: not on this list
    (listed,) = events(actor_id=ems.pk, action="list")
    assert (listed.patient_id, listed.detail, listed.purpose) == (
        ward.treated.pk,
        {"list": "break_glass_start", "lists": ["recent_arrivals"]},
        "emergency",
    )


def test_a_patient_both_arrived_and_granted_is_one_event_of_the_start_page(
    ems: User, ems_client: Client, ward: Ward
) -> None:
    with transaction.atomic():
        mark_actor(None, job="test")
        grant = BreakGlassGrant.objects.create(
            user=ems,
            patient_id=ward.treated.pk,
            reason=BreakGlassGrant.Reason.OTHER,
            explanation=EXPLANATION,
            granted_at=timezone.now(),
            expires_at=timezone.now() + datetime.timedelta(hours=1),
        )
    before = AccessEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    html = ems_client.get(reverse("records:emergency")).content.decode()
    assert html.count("TREATEDSURNAME") >= 2  # in the arrivals and among the grants in force
    (listed,) = events(actor_id=ems.pk, action="list", pk__gt=before)
    assert listed.patient_id == ward.treated.pk
    assert listed.detail == {
        "list": "break_glass_start",
        "lists": ["recent_arrivals", "active_grants"],
        "grant_ids": [grant.pk],
    }
    assert listed.explanation == "break_glass"


def test_dashboard_and_navigation_offer_emergency_access(
    ems: User, ems_client: Client, stranger: Patient, nurse: User, client_for: Callable[[User], Client]
) -> None:
    html = ems_client.get("/").content.decode()
    assert "Break the glass for a patient" in html
    assert reverse("records:emergency") in html
    assert ask(ems_client, ems, stranger).status_code == 302
    html = ems_client.get("/").content.decode()
    assert "OTHERSURNAME, Omar" in html
    assert reverse("records:emergency_summary", args=[stranger.pk]) in html
    assert "Emergency access" in client_for(nurse).get("/").content.decode()


def test_summary_needs_a_bounded_number_of_queries(
    ems: User,
    ems_client: Client,
    stranger: Patient,
    django_assert_max_num_queries: Callable[..., Any],
) -> None:
    assert ask(ems_client, ems, stranger).status_code == 302
    url = reverse("records:emergency_summary", args=[stranger.pk])
    ems_client.get(url)  # the first event of a chain partition creates its head
    with CaptureQueriesContext(connection) as small:
        assert ems_client.get(url).status_code == 200
    for n in range(30):
        observation_record(
            actor=None,
            patient_id=stranger.pk,
            category=Observation.Category.VITAL_SIGNS,
            display=f"Measure {n}",
            value=str(n),
        )
        medication_prescribe(actor=None, patient_id=stranger.pk, display=f"Drug {n}", dosage="daily")
    # Session, user, device, policy (grant), the event and its rules, patient, five sections, grant
    # info, savepoints: the same number whatever the size of the record.
    with django_assert_max_num_queries(40) as large:
        assert ems_client.get(url).status_code == 200
    # The record's own queries are the same however big it is (the audit trail's and the inline
    # rules' vary a little with chain partitions and baselines, within the bound above).
    assert clinical(large.captured_queries) == clinical(small.captured_queries) <= 9


def clinical(queries: list[dict[str, Any]]) -> int:
    return sum(1 for q in queries if 'FROM "records_' in q["sql"])


def test_grant_appears_in_the_patients_access_report(
    ems: User, ems_client: Client, stranger: Patient, compliance: User, client_for: Callable[[User], Client]
) -> None:
    assert ask(ems_client, ems, stranger).status_code == 302
    grant = BreakGlassGrant.objects.get()
    today = timezone.localdate().isoformat()
    page = client_for(compliance).get(
        reverse("admin:audit_report_patient"), {"patient_id": stranger.pk, "date_from": today, "date_to": today}
    )
    assert page.status_code == 200
    (row,) = page.context["grants"]
    assert (row.id, row.user_id, row.username, row.role, row.reason) == (
        grant.pk,
        ems.pk,
        "ems",
        "ems",
        "emergency_treatment",
    )
    assert row.expires_at == grant.expires_at
    html = page.content.decode()
    assert "Emergency access (break the glass): 1 grant" in html
    assert "emergency_treatment" in html
    assert EXPLANATION not in html
    # The grant's own access event is in the report's list of accesses too.
    assert "break_glass" in [event.action for event in page.context["page"].object_list]


def test_request_page_opens_only_for_a_patient_this_session_found(
    ems: User, ems_client: Client, stranger: Patient, ward: Ward
) -> None:
    url = reverse("records:emergency_request", args=[stranger.pk])
    # Walking through ids shows nobody, and records nothing.
    assert ems_client.get(url).status_code == 404
    assert ems_client.post(grant_url(stranger), {"reason": "other"}).status_code == 404
    assert not events(actor_id=ems.pk)
    assert find(ems_client, stranger).status_code == 200
    assert ems_client.get(url).status_code == 200
    (viewed,) = events(actor_id=ems.pk, action="view")
    assert (viewed.patient_id, viewed.category, viewed.explanation) == (
        stranger.pk,
        "demographics",
        "break_glass_request",
    )
    # A recent arrival may be asked for straight from the list.
    arrival = reverse("records:emergency_request", args=[ward.treated.pk])
    assert ems_client.get(arrival).status_code == 404
    ems_client.get(reverse("records:emergency"))
    assert ems_client.get(arrival).status_code == 200


def test_every_grant_raises_an_alert_for_review(ems: User, ems_client: Client, stranger: Patient) -> None:
    # Raised by the audit app's receiver of break_glass_granted, in the grant's transaction.
    assert ask(ems_client, ems, stranger).status_code == 302
    alert = Alert.objects.get(rule="break_glass")
    assert (alert.actor_id, alert.patient_id, alert.status) == (ems.pk, stranger.pk, Alert.Status.OPEN)
    assert EXPLANATION not in alert.reason
