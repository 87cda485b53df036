"""HIPAA Safe Harbor and Limited Data Set transforms of a patient's demographics.

The engine never copies a field it was handed: each output is built from scratch out of the few
values a tier allows, so an identifier the code does not know about (a new model field, an extra
identifier) is dropped by construction, not by a deny-list someone must remember to extend.

The 18 identifiers of 45 CFR 164.514(b)(2)(i), each of the patient *and of relatives, employers and
household members* (here: the record's emergency contact, and any contact handed in ``contacts``),
and what ``safe_harbor_demographics`` does with each:

(A) Names: removed (given and family name, contact names).
(B) Geographic subdivisions smaller than a state: removed (street, city, county); the state is kept;
    the ZIP code becomes its first three digits, or ``000`` for the 17 restricted areas and for a
    code that is not a US ZIP (``research.zip3``).
(C) All elements of dates except the year: birth and death dates become years; every other date is
    reduced with ``year_only``. Ages over 89 become ``"90+"`` and the birth year of those patients
    (and any year that would reveal their age: the death year) is removed.
(D) Telephone numbers: removed (patient and contacts).
(E) Fax numbers: removed.
(F) Email addresses: removed.
(G) Social security numbers: removed (the national id field).
(H) Medical record numbers: removed.
(I) Health plan beneficiary numbers: removed.
(J) Account numbers: removed.
(K) Certificate/licence numbers: removed.
(L) Vehicle identifiers and serial numbers, including licence plates: removed.
(M) Device identifiers and serial numbers: removed.
(N) Web URLs: removed.
(O) IP addresses: removed.
(P) Biometric identifiers, including finger and voice prints: removed.
(Q) Full-face photographs and comparable images: removed.
(R) Any other unique identifying number, characteristic or code: removed; a dataset links a
    patient's rows only through a keyed pseudonym (``research.pseudonyms``), which is not derived
    from anything about the person (an HMAC of the record's random row id under a research key that
    never leaves the hospital), as 164.514(c) requires of a re-identification code.

What stays: sex, state, ZIP3, birth year (unless 90+), age in years (or "90+"), death year.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

from research.zip3 import zip3

# HIPAA: "ages over 89 ... aggregated into a single category of age 90 or older".
OLDEST_EXACT_AGE = 89
AGE_90_PLUS = "90+"


@dataclass(frozen=True)
class Contact:
    """A relative, employer or household member named in the record; every field is an identifier."""

    name: str = ""
    phone: str = ""
    email: str = ""
    address: str = ""
    relationship: str = ""


@dataclass(frozen=True)
class PatientDemographics:
    """The demographics of one record as handed to the engine (already read through the audited path).

    The first fields mirror ``records.models.Patient``; ``identifiers`` carries any other identifier a
    source may hold (fax, health plan, account, licence, vehicle, device, URL, IP, biometric, photo
    reference...) and ``contacts`` relatives, employers and household members. None of them ever
    reaches an output.
    """

    mrn: str
    given_name: str
    family_name: str
    birth_date: date
    sex: str
    address_line: str = ""
    city: str = ""
    postal_code: str = ""
    state: str = ""
    phone: str = ""
    email: str = ""
    national_id: str = ""
    emergency_contact_name: str = ""
    emergency_contact_phone: str = ""
    deceased_date: date | None = None
    identifiers: Mapping[str, str] = field(default_factory=dict)
    contacts: tuple[Contact, ...] = ()


@dataclass(frozen=True)
class SafeHarborDemographics:
    """What a Safe Harbor dataset may hold of a patient's demographics."""

    sex: str
    state: str
    zip3: str
    age: str  # whole years as text, or "90+"
    birth_year: int | None  # None for "90+"
    deceased_year: int | None  # None when alive, and for "90+"

    def as_row(self) -> dict[str, str]:
        """The fields as CSV-ready text (an absent year is the empty string)."""
        return {
            "sex": self.sex,
            "state": self.state,
            "zip3": self.zip3,
            "age": self.age,
            "birth_year": "" if self.birth_year is None else str(self.birth_year),
            "deceased_year": "" if self.deceased_year is None else str(self.deceased_year),
        }


@dataclass(frozen=True)
class LimitedDataSetDemographics:
    """What a HIPAA Limited Data Set (45 CFR 164.514(e)) may hold: dates, town/city, state and ZIP."""

    sex: str
    city: str
    state: str
    postal_code: str
    birth_date: date
    deceased_date: date | None
    age: int

    def as_row(self) -> dict[str, str]:
        """The fields as CSV-ready text (ISO dates; an absent date is the empty string)."""
        return {
            "sex": self.sex,
            "city": self.city,
            "state": self.state,
            "postal_code": self.postal_code,
            "birth_date": self.birth_date.isoformat(),
            "deceased_date": "" if self.deceased_date is None else self.deceased_date.isoformat(),
            "age": str(self.age),
        }


def age_in_years(birth_date: date, on: date) -> int:
    """Whole years between ``birth_date`` and ``on`` (a birthday on ``on`` counts)."""
    before_birthday = (on.month, on.day) < (birth_date.month, birth_date.day)
    return on.year - birth_date.year - int(before_birthday)


def year_only(value: date | None) -> int | None:
    """Safe Harbor (C): a date keeps its year only."""
    return None if value is None else value.year


def _age_on(record: PatientDemographics, as_of: date) -> int:
    # The age of a deceased patient stops at death; never negative for a bad reference date.
    end = min(as_of, record.deceased_date) if record.deceased_date else as_of
    return max(0, age_in_years(record.birth_date, end))


def safe_harbor_demographics(record: PatientDemographics, *, as_of: date) -> SafeHarborDemographics:
    """Return the Safe Harbor fields of ``record``, its age taken on ``as_of`` (the release date).

    A patient is "90+" when their age is over 89, and also when the years alone would say they may be
    (``end year - birth year > 89``, e.g. born in December 1936 and released in 2026): a year
    "indicative of such age" goes too. For them the birth and death years are removed.

    A birth year more than 89 years before the release is removed even for a patient who died
    younger (born 1905, died 1990 aged 85: the age stays, 1905 and 1990 go), since it still says
    "over 89" of a living reader's arithmetic, and the death year with the age would give it back.
    """
    age = _age_on(record, as_of)
    end_year = record.deceased_date.year if record.deceased_date else as_of.year
    over_89 = age > OLDEST_EXACT_AGE or end_year - record.birth_date.year > OLDEST_EXACT_AGE
    hide_years = over_89 or as_of.year - record.birth_date.year > OLDEST_EXACT_AGE
    return SafeHarborDemographics(
        sex=record.sex,
        state=record.state.strip(),
        zip3=zip3(record.postal_code),
        age=AGE_90_PLUS if over_89 else str(age),
        birth_year=None if hide_years else record.birth_date.year,
        deceased_year=None if hide_years else year_only(record.deceased_date),
    )


def limited_data_set(record: PatientDemographics, *, as_of: date) -> LimitedDataSetDemographics:
    """Return the Limited Data Set fields of ``record``: the 16 direct identifiers removed.

    45 CFR 164.514(e)(2) removes, of the patient and of relatives, employers and household members:
    names; postal address other than town or city, state and ZIP code; telephone and fax numbers;
    email addresses; SSNs; medical record, health plan and account numbers; certificate/licence
    numbers; vehicle and device identifiers and serial numbers; URLs; IP addresses; biometric
    identifiers; full-face photographs. Dates, city, state, the full ZIP code and exact ages stay:
    the tier is released only under a data-use agreement (the request workflow enforces that).
    """
    return LimitedDataSetDemographics(
        sex=record.sex,
        city=record.city.strip(),
        state=record.state.strip(),
        postal_code=record.postal_code.strip(),
        birth_date=record.birth_date,
        deceased_date=record.deceased_date,
        age=_age_on(record, as_of),
    )
