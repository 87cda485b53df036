from __future__ import annotations

import dataclasses
import json
from datetime import date

import pytest

from records.models import Patient
from research.safe_harbor import (
    Contact,
    PatientDemographics,
    limited_data_set,
    safe_harbor_demographics,
)

RELEASE = date(2026, 12, 6)

# One record holding every Safe Harbor identifier, of the patient and of their contacts (a relative,
# an employer, a household member), each a value distinctive enough to be searched for in the output.
EVERY_IDENTIFIER = {
    "A names": ["Zenobia", "Quartermaine", "Bartholomew Quartermaine", "Ingrid Vasquez-Oduya", "Acme Widgets Ltd"],
    "B geography below state": ["742 Evergreen Terrace", "Springfield Gardens", "02139", "Suite 9 Elm Street"],
    "C dates": ["1961-03-14", "2025-08-09", "03-14", "08-09"],
    "D telephone": ["+1 617 555 0142", "+1 617 555 0199", "+1 508 555 0111"],
    "E fax": ["+1 617 555 0177"],
    "F email": ["zenobia.q@example.org", "ingrid.vo@example.net"],
    "G SSN": ["078-05-1120"],
    "H MRN": ["MRN-4471-9923"],
    "I health plan": ["HPB-88213377"],
    "J account": ["ACCT-55102938"],
    "K licence": ["DL-S530-4415-9981"],
    "L vehicle": ["1HGCM82633A004352", "MA-7XK-219"],
    "M device": ["PM-SN-0049912"],
    "N URL": ["https://zenobia.example.org/me"],
    "O IP address": ["203.0.113.77"],
    "P biometric": ["fingerprint:9f2c11aa"],
    "Q photograph": ["photo:face-20250101.jpg"],
    "R other unique number": ["STUDY-XJ-000731"],
}


def full_record(**changes: object) -> PatientDemographics:
    record = PatientDemographics(
        mrn="MRN-4471-9923",
        given_name="Zenobia",
        family_name="Quartermaine",
        birth_date=date(1961, 3, 14),
        sex="female",
        address_line="742 Evergreen Terrace",
        city="Springfield Gardens",
        postal_code="02139",
        state="MA",
        phone="+1 617 555 0142",
        email="zenobia.q@example.org",
        national_id="078-05-1120",
        emergency_contact_name="Bartholomew Quartermaine",
        emergency_contact_phone="+1 617 555 0199",
        deceased_date=date(2025, 8, 9),
        identifiers={
            "fax": "+1 617 555 0177",
            "health_plan": "HPB-88213377",
            "account": "ACCT-55102938",
            "licence": "DL-S530-4415-9981",
            "vehicle_vin": "1HGCM82633A004352",
            "vehicle_plate": "MA-7XK-219",
            "device_serial": "PM-SN-0049912",
            "url": "https://zenobia.example.org/me",
            "ip": "203.0.113.77",
            "biometric": "fingerprint:9f2c11aa",
            "photo": "photo:face-20250101.jpg",
            "study_id": "STUDY-XJ-000731",
        },
        contacts=(
            Contact(
                name="Ingrid Vasquez-Oduya",
                phone="+1 508 555 0111",
                email="ingrid.vo@example.net",
                address="Suite 9 Elm Street",
                relationship="household member",
            ),
            Contact(name="Acme Widgets Ltd", relationship="employer"),
        ),
    )
    return dataclasses.replace(record, **changes)  # type: ignore[arg-type]


def released_text(value: object) -> str:
    """Everything a release could carry of ``value``: its fields and its row, as text."""
    return json.dumps([dataclasses.asdict(value), value.as_row()], default=str)  # type: ignore[call-overload, attr-defined]


def test_the_fixture_really_holds_every_identifier():
    # Guards the test itself: each value searched for below is in the record it starts from.
    source = json.dumps(dataclasses.asdict(full_record()), default=str)
    for values in EVERY_IDENTIFIER.values():
        for value in values:
            if value not in ("03-14", "08-09"):
                assert value in source, value


@pytest.mark.parametrize("identifier", sorted(EVERY_IDENTIFIER))
def test_safe_harbor_output_holds_none_of_the_18_identifiers(identifier):
    output = released_text(safe_harbor_demographics(full_record(), as_of=RELEASE))
    for value in EVERY_IDENTIFIER[identifier]:
        assert value not in output


def test_safe_harbor_keeps_only_the_allowed_fields():
    released = safe_harbor_demographics(full_record(), as_of=RELEASE)
    assert released.as_row() == {
        "sex": "female",
        "state": "MA",
        "zip3": "021",
        "age": "64",
        "birth_year": "1961",
        "deceased_year": "2025",
    }


def test_safe_harbor_zip3_of_a_restricted_area_is_000():
    assert safe_harbor_demographics(full_record(postal_code="03601"), as_of=RELEASE).zip3 == "000"


def test_age_89_is_kept_with_its_birth_year():
    released = safe_harbor_demographics(full_record(birth_date=date(1937, 1, 2), deceased_date=None), as_of=RELEASE)
    assert (released.age, released.birth_year) == ("89", 1937)


@pytest.mark.parametrize("birth", [date(1936, 1, 2), date(1922, 5, 30)], ids=["90", "104"])
def test_ages_over_89_become_90_plus_and_lose_their_birth_year(birth):
    record = full_record(birth_date=birth, deceased_date=None)
    released = safe_harbor_demographics(record, as_of=RELEASE)
    assert released.age == "90+"
    assert released.birth_year is None
    assert str(birth.year) not in released_text(released)
    assert released.as_row()["age"] == "90+"


def test_a_birth_year_that_says_90_is_removed_even_before_the_birthday():
    # Born 31 December 1936: 89 on the release day, but 2026 - 1936 = 90 from the year alone.
    released = safe_harbor_demographics(full_record(birth_date=date(1936, 12, 31), deceased_date=None), as_of=RELEASE)
    assert (released.age, released.birth_year) == ("90+", None)


def test_a_patient_who_died_over_89_loses_the_death_year_too():
    record = full_record(birth_date=date(1920, 6, 1), deceased_date=date(2012, 2, 3))
    released = safe_harbor_demographics(record, as_of=RELEASE)
    assert (released.age, released.birth_year, released.deceased_year) == ("90+", None, None)
    assert "2012" not in released_text(released)


def test_age_stops_at_death():
    released = safe_harbor_demographics(full_record(), as_of=RELEASE)
    assert released.age == "64"  # died 9 August 2025, aged 64, not 65 on the release day


def test_every_demographic_field_of_the_patient_model_is_handed_to_the_engine():
    # A new identifying column on Patient must be considered here; fields that are not the person's
    # demographics (keys, indexes, links, timestamps, relations) are listed once.
    not_demographics = {
        "id", "row_uid", "is_confidential", "mrn_index", "name_dob_index", "family_name_index",
        "given_name_index", "address_index", "portal_user", "staff_user", "source_id", "created_at", "updated_at",
    }  # fmt: skip
    model_fields = {f.name for f in Patient._meta.concrete_fields}
    engine_fields = {f.name for f in dataclasses.fields(PatientDemographics)}
    assert model_fields - not_demographics <= engine_fields


LDS_DIRECT_IDENTIFIERS = {
    key: values
    for key, values in EVERY_IDENTIFIER.items()
    if key not in ("C dates", "B geography below state", "R other unique number")
}


@pytest.mark.parametrize("identifier", sorted(LDS_DIRECT_IDENTIFIERS))
def test_limited_data_set_holds_none_of_the_16_direct_identifiers(identifier):
    output = released_text(limited_data_set(full_record(), as_of=RELEASE))
    for value in LDS_DIRECT_IDENTIFIERS[identifier]:
        assert value not in output


def test_limited_data_set_drops_street_addresses_and_keeps_dates_city_state_zip():
    released = limited_data_set(full_record(), as_of=RELEASE)
    output = released_text(released)
    assert "742 Evergreen Terrace" not in output
    assert "Suite 9 Elm Street" not in output
    assert released.as_row() == {
        "sex": "female",
        "city": "Springfield Gardens",
        "state": "MA",
        "postal_code": "02139",
        "birth_date": "1961-03-14",
        "deceased_date": "2025-08-09",
        "age": "64",
    }


def test_a_birth_year_over_89_years_back_goes_even_when_the_patient_died_younger():
    # Born 1905, died 1990 aged 85: the age at death is kept, the years that give 1905 away are not.
    record = full_record(birth_date=date(1905, 4, 1), deceased_date=date(1990, 6, 1))
    released = safe_harbor_demographics(record, as_of=RELEASE)
    assert (released.age, released.birth_year, released.deceased_year) == ("85", None, None)
