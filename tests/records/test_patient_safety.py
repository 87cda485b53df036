"""Patient safety on the write path: drug-allergy checks, duplicate allergies, vital signs, result values."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.urls import reverse

from accounts.models import User
from accounts.roles import Role
from audit.models import AccessEvent, ChangeEvent
from records import selectors, terminology
from records.models import Allergy, Encounter, Medication, Observation
from records.services import (
    AllergyWarning,
    allergy_record,
    encounter_admit,
    encounter_discharge,
    medication_prescribe,
    observation_record,
)
from tests.factories import assign
from tests.records.conftest import Ward

pytestmark = pytest.mark.django_db

AMOXICILLIN = "723"
PENICILLINS = "class:penicillins"


def _prescribe(client: Client, ward: Ward, **data: str) -> object:
    return client.post(
        reverse("records:prescription_new", args=[ward.treated.pk]),
        {"dosage": "500 mg tds", "frequency": "q8h", **data},
    )


def _medications(ward: Ward) -> int:
    return Medication.objects.filter(patient=ward.treated).count()


# --- Drug-allergy check -----------------------------------------------------------------------


def test_amoxicillin_for_a_patient_with_a_severe_penicillin_allergy_is_warned_and_not_saved(
    ward: Ward, physician: User
) -> None:
    allergy_record(actor=physician, patient_id=ward.treated.pk, code=PENICILLINS, substance="", severity="severe")
    before = _medications(ward)
    with pytest.raises(AllergyWarning) as warning:
        medication_prescribe(actor=physician, patient_id=ward.treated.pk, display="", dosage="500 mg", code=AMOXICILLIN)
    assert [c.why for c in warning.value.conflicts] == ["same class (penicillins)"]
    # The exception text names no patient value: only what to do.
    assert "enicillin" not in str(warning.value)
    assert "moxicillin" not in str(warning.value)
    assert _medications(ward) == before


def test_free_text_amoxicillin_against_a_free_text_penicillin_allergy_is_warned(ward: Ward, physician: User) -> None:
    allergy_record(actor=physician, patient_id=ward.treated.pk, substance="Penicillin", severity="severe")
    with pytest.raises(AllergyWarning):
        medication_prescribe(actor=physician, patient_id=ward.treated.pk, display="amoxicillin 500mg caps", dosage="x")


def test_same_substance_and_class_cross_reactivity_are_warned(ward: Ward, physician: User) -> None:
    allergy_record(actor=physician, patient_id=ward.treated.pk, code="5640", substance="")  # ibuprofen
    allergy_record(actor=physician, patient_id=ward.treated.pk, substance="Sulfa drugs")
    with pytest.raises(AllergyWarning) as same:
        medication_prescribe(actor=physician, patient_id=ward.treated.pk, display="Ibuprofen", dosage="400 mg")
    assert "same substance" in [c.why for c in same.value.conflicts]
    with pytest.raises(AllergyWarning):
        medication_prescribe(actor=physician, patient_id=ward.treated.pk, display="", dosage="1 tab", code="10831")


def test_prescribing_amoxicillin_shows_the_warning_with_the_allergy_and_the_patient_banner(
    ward: Ward, physician: User, client_for: Callable[[User], Client]
) -> None:
    allergy_record(
        actor=physician,
        patient_id=ward.treated.pk,
        code=PENICILLINS,
        substance="",
        reaction="Anaphylaxis",
        severity="severe",
    )
    before = _medications(ward)
    response = _prescribe(client_for(physician), ward, code=AMOXICILLIN)
    assert response.status_code == 400  # type: ignore[attr-defined]
    html = response.content.decode()  # type: ignore[attr-defined]
    assert 'data-testid="allergy-warning"' in html
    assert "Anaphylaxis" in html
    assert "same class (penicillins)" in html
    assert "TREATEDSURNAME" in html  # the banner
    assert "Prescribe despite the allergy" in html
    assert _medications(ward) == before


def test_override_with_a_reason_is_saved_recorded_and_shown_in_the_chart(
    ward: Ward, physician: User, client_for: Callable[[User], Client]
) -> None:
    allergy_record(actor=physician, patient_id=ward.treated.pk, code=PENICILLINS, substance="", severity="mild")
    client = client_for(physician)
    reason = "Tolerated amoxicillin in 2024 under observation"
    response = _prescribe(client, ward, code=AMOXICILLIN, allergy_override="on", allergy_override_reason=reason)
    assert response.status_code == 302  # type: ignore[attr-defined]
    medication = Medication.objects.filter(patient=ward.treated).latest("pk")
    assert medication.code == AMOXICILLIN
    assert medication.allergy_override_reason == reason
    event = ChangeEvent.objects.get(object_id=medication.pk, action="create", category="medications")
    assert "allergy_override_reason" in event.fields
    chart = client.get(reverse("records:chart", args=[ward.treated.pk])).content.decode()
    assert 'data-testid="allergy-override"' in chart
    assert reason in chart
    # The reason is stored encrypted and named, never copied, in the audit trail.
    with connection.cursor() as cursor:
        cursor.execute("SELECT allergy_override_reason FROM records_medication WHERE id = %s", [medication.pk])
        assert "Tolerated" not in cursor.fetchone()[0]
        for table in ("audit_accessevent", "audit_changeevent"):
            cursor.execute(f"SELECT * FROM {table}")  # noqa: S608 - fixed table names
            assert "Tolerated" not in " ".join(str(v) for row in cursor.fetchall() for v in row)


def test_override_without_a_reason_is_refused(
    ward: Ward, physician: User, client_for: Callable[[User], Client]
) -> None:
    allergy_record(actor=physician, patient_id=ward.treated.pk, code=PENICILLINS, substance="")
    before = _medications(ward)
    response = _prescribe(client_for(physician), ward, code=AMOXICILLIN, allergy_override="on")
    assert response.status_code == 400  # type: ignore[attr-defined]
    assert b"Give the reason for prescribing despite the allergy." in response.content  # type: ignore[attr-defined]
    assert _medications(ward) == before


def test_a_legitimate_prescription_with_no_allergy_saves_without_warning(
    ward: Ward, physician: User, client_for: Callable[[User], Client]
) -> None:
    allergy_record(actor=physician, patient_id=ward.treated.pk, code=PENICILLINS, substance="")
    client = client_for(physician)
    response = _prescribe(client, ward, code="161")  # acetaminophen
    assert response.status_code == 302  # type: ignore[attr-defined]
    saved = Medication.objects.filter(patient=ward.treated).latest("pk")
    assert saved.code == "161"
    assert saved.display == "Acetaminophen"
    assert not saved.allergy_override_reason
    # A typed name that is exactly a listed drug is coded.
    plain = medication_prescribe(actor=physician, patient_id=ward.treated.pk, display="Metformin", dosage="500 mg")
    assert plain.code == "6809"


def test_amoxicillin_without_any_allergy_saves(ward: Ward, physician: User) -> None:
    saved = medication_prescribe(actor=physician, patient_id=ward.treated.pk, display="", dosage="x", code=AMOXICILLIN)
    assert saved.display == "Amoxicillin"
    assert not saved.allergy_override_reason


def test_free_text_entries_are_flagged_uncoded_in_the_chart(
    ward: Ward, physician: User, client_for: Callable[[User], Client]
) -> None:
    allergy_record(actor=physician, patient_id=ward.treated.pk, substance="Latex")
    coded = allergy_record(actor=physician, patient_id=ward.treated.pk, substance="penicillins")
    assert coded.code == PENICILLINS  # an exact name is coded
    chart = client_for(physician).get(reverse("records:chart", args=[ward.treated.pk]))
    html = chart.content.decode()
    assert html.count(">uncoded</span>") == 2  # Latex, and the fixture's "Aspirin 75 mg"
    rows = {a.substance: a.coded for a in chart.context["chart"].allergies}
    assert rows == {"Latex": False, "penicillins": True}


def test_a_duplicate_allergy_is_refused(ward: Ward, physician: User, client_for: Callable[[User], Client]) -> None:
    allergy_record(actor=physician, patient_id=ward.treated.pk, code=PENICILLINS, substance="")
    with pytest.raises(ValidationError, match="already recorded"):
        allergy_record(actor=physician, patient_id=ward.treated.pk, substance="Penicillin")
    response = client_for(physician).post(
        reverse("records:allergy_new", args=[ward.treated.pk]), {"code": PENICILLINS, "severity": "severe"}
    )
    assert response.status_code == 400
    assert b"This allergy is already recorded for this patient" in response.content
    assert b"TREATEDSURNAME" in response.content
    assert Allergy.objects.filter(patient=ward.treated).count() == 1
    # The same allergen for another patient is not a duplicate.
    allergy_record(actor=None, patient_id=ward.other.pk, code=PENICILLINS, substance="")


def test_every_listed_drug_class_exists_and_codes_are_unique() -> None:
    for drug in terminology.DRUGS.values():
        assert set(drug.classes) <= set(terminology.DRUG_CLASSES), drug.name
    assert 30 <= len(terminology.DRUGS) <= 60


# --- Vital signs ------------------------------------------------------------------------------


def _vitals(client: Client, ward: Ward, **data: str) -> object:
    return client.post(reverse("records:vitals_new", args=[ward.treated.pk]), data)


def test_blood_pressure_60_over_150_is_refused_with_the_right_message(
    ward: Ward, nurse: User, client_for: Callable[[User], Client]
) -> None:
    response = _vitals(client_for(nurse), ward, systolic="60", diastolic="150", heart_rate="80")
    assert response.status_code == 400  # type: ignore[attr-defined]
    html = response.content.decode()  # type: ignore[attr-defined]
    assert "The diastolic pressure must be lower than the systolic" in html
    assert "Enter at least one vital sign" not in html
    assert "TREATEDSURNAME" in html
    assert not Observation.objects.filter(patient=ward.treated).exists()  # not even the heart rate


def test_an_implausible_vital_gets_its_own_message_and_nothing_is_saved(
    ward: Ward, nurse: User, client_for: Callable[[User], Client]
) -> None:
    response = _vitals(client_for(nurse), ward, heart_rate="900", systolic="120", diastolic="80")
    html = response.content.decode()  # type: ignore[attr-defined]
    assert response.status_code == 400  # type: ignore[attr-defined]
    assert "Heart rate must be between 20 and 250 /min." in html
    assert "Enter at least one vital sign" not in html
    assert not Observation.objects.filter(patient=ward.treated).exists()


def test_abnormal_but_plausible_vitals_are_saved_and_flagged_in_the_chart(
    ward: Ward, nurse: User, physician: User, client_for: Callable[[User], Client]
) -> None:
    assert _vitals(client_for(nurse), ward, heart_rate="130", spo2="97").status_code == 302  # type: ignore[attr-defined]
    flags = {o.display: o.interpretation for o in Observation.objects.filter(patient=ward.treated)}
    assert flags == {"Heart rate": "H", "Oxygen saturation": "N"}
    chart = client_for(physician).get(reverse("records:chart", args=[ward.treated.pk])).content.decode()
    assert chart.count('data-testid="result-flag"') == 1
    assert ">high</span>" in chart


# --- Laboratory results -----------------------------------------------------------------------


def _result(client: Client, ward: Ward, **data: str) -> object:
    return client.post(reverse("records:order_result", args=[ward.lab_order.pk]), data)


def test_banana_is_refused_as_a_potassium_value(ward: Ward, lab: User, client_for: Callable[[User], Client]) -> None:
    response = _result(client_for(lab), ward, loinc_code="2823-3", value="banana")
    assert response.status_code == 400  # type: ignore[attr-defined]
    html = response.content.decode()  # type: ignore[attr-defined]
    assert "Potassium is a number: enter a value in mmol/L." in html
    assert "TREATEDSURNAME" in html
    assert not Observation.objects.filter(order=ward.lab_order).exists()
    # Typed by name without a code, it is the same test and the same refusal.
    with pytest.raises(ValidationError, match="Potassium is a number"):
        observation_record(
            actor=lab,
            patient_id=ward.treated.pk,
            category="laboratory",
            display="potassium",
            value="banana",
            order_id=ward.lab_order.pk,
        )


def test_a_result_in_another_unit_or_implausible_is_refused(ward: Ward, lab: User) -> None:
    for value, unit, message in (("4.0", "mg/dL", "entered in mmol/L"), ("-1", "", "between 0.5 and 15")):
        with pytest.raises(ValidationError, match=message):
            observation_record(
                actor=lab,
                patient_id=ward.treated.pk,
                category="laboratory",
                display="Potassium",
                loinc_code="2823-3",
                value=value,
                unit=unit,
                order_id=ward.lab_order.pk,
            )


def test_a_critical_potassium_is_flagged_and_shown_on_the_ordering_physicians_dashboard(
    ward: Ward,
    lab: User,
    physician: User,
    make_persona: Callable[..., User],
    client_for: Callable[[User], Client],
) -> None:
    assert _result(client_for(lab), ward, loinc_code="2823-3", value="7.1").status_code == 302  # type: ignore[attr-defined]
    result = Observation.objects.get(order=ward.lab_order)
    assert (result.value, result.unit, result.interpretation) == ("7.1", "mmol/L", "HH")
    assert result.reference_range == "3.5-5.1 mmol/L"

    client = client_for(physician)
    chart = client.get(reverse("records:chart", args=[ward.treated.pk])).content.decode()
    assert ">critical high</span>" in chart
    assert "ref. 3.5-5.1 mmol/L" in chart

    dashboard = client.get("/").content.decode()
    panel = dashboard.split('data-testid="critical-results"')[1].split("</section>")[0]
    assert "TREATEDSURNAME" in panel
    assert "7.1" in panel
    assert "critical high" in panel
    (listed,) = AccessEvent.objects.filter(actor_id=physician.pk, patient_id=ward.treated.pk, action="list")
    assert "critical_results" in listed.detail["lists"]

    # Another physician, even on the care team, did not order it: not on their dashboard.
    colleague = make_persona(Role.PHYSICIAN, username="colleague")
    assign(colleague, ward.treated)
    other = client_for(colleague).get("/").content.decode()
    assert "7.1" not in other.split('data-testid="critical-results"')[1].split("</section>")[0]


def test_a_low_potassium_is_flagged_low_but_not_critical(ward: Ward, lab: User, physician: User) -> None:
    observation_record(
        actor=lab,
        patient_id=ward.treated.pk,
        category="laboratory",
        display="Potassium",
        loinc_code="2823-3",
        value="3.1",
        order_id=ward.lab_order.pk,
    )
    assert Observation.objects.get(order=ward.lab_order).interpretation == "L"
    assert selectors.critical_results_for_orderer(actor=physician) == []


# --- Inpatient stays and doses given ------------------------------------------------------------


def test_a_second_inpatient_stay_in_progress_is_refused(ward: Ward, nurse: User) -> None:
    # The ward fixture admitted the patient; a second admission while that stay is open is refused.
    before = Encounter.objects.filter(patient=ward.treated).count()
    with pytest.raises(ValidationError, match="already has an inpatient stay in progress"):
        encounter_admit(actor=None, patient_id=ward.treated.pk, kind=Encounter.Kind.INPATIENT, department=None)
    assert Encounter.objects.filter(patient=ward.treated).count() == before
    # An outpatient visit meanwhile is fine, and so is a new stay after discharge.
    encounter_admit(actor=None, patient_id=ward.treated.pk, kind=Encounter.Kind.AMBULATORY, department=None)
    encounter_discharge(actor=None, encounter_id=ward.encounter.pk, patient_id=ward.treated.pk)
    encounter_admit(actor=None, patient_id=ward.treated.pk, kind=Encounter.Kind.INPATIENT, department=None)


def test_a_second_admission_through_the_form_gets_a_clear_message(
    ward: Ward, front_desk: User, physician: User, client_for: Callable[[User], Client]
) -> None:
    response = client_for(front_desk).post(
        reverse("records:admit", args=[ward.treated.pk]),
        {"kind": "inpatient", "department": physician.department.pk, "reason": "Fall"},  # type: ignore[union-attr]
    )
    assert response.status_code == 400
    assert b"already has an inpatient stay in progress" in response.content


def test_recorded_doses_appear_in_the_chart(
    ward: Ward, nurse: User, physician: User, client_for: Callable[[User], Client]
) -> None:
    response = client_for(nurse).post(
        reverse("records:administer", args=[ward.treated.pk, ward.medication.pk]), {"dose": "75 mg given orally"}
    )
    assert response.status_code == 302
    chart = client_for(physician).get(reverse("records:chart", args=[ward.treated.pk]))
    (given,) = chart.context["chart"].administrations
    assert (given.medication, given.dose) == ("Aspirin 75 mg", "75 mg given orally")
    assert given.administered_by == nurse.get_full_name()
    assert "75 mg given orally" in chart.content.decode()
