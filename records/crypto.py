"""Blind indexes of the clinical record, on the project keyring (healthcrypt/crypto.py)."""

from __future__ import annotations

import datetime
import unicodedata

from healthcrypt.crypto import blind_index

# Letters NFKD does not decompose into a base letter and a mark, spelt the way a clerk would type
# them on a plain keyboard, so "Søren Łukasz" and "Soren Lukasz" index alike.
_LETTERS = str.maketrans({"ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "æ": "ae", "œ": "oe", "\u0131": "i"})
# Apostrophes, straight or curly, are dropped ("O'Brien" = "OBrien"); hyphens and dashes separate words
# ("Smith-Jones" = "Smith Jones"): the two ways people type these names either way.
# ' and its look-alikes: right and left single quotation marks, modifier apostrophe, grave and
# acute accents, modifier prime, prime.
_APOSTROPHES = str.maketrans(dict.fromkeys("'\u2019\u2018\u02bc`\u00b4\u02b9\u2032", None))
# - and its look-alikes: hyphen, non-breaking hyphen, figure dash, en and em dash, bar, minus sign.
_HYPHENS = str.maketrans(dict.fromkeys("-\u2010\u2011\u2012\u2013\u2014\u2015\u2212", " "))


def normalise_name(value: str) -> str:
    """A person's name as the name indexes see it, at save and at search alike.

    Compatibility-decomposed (NFKD) with the accents dropped, case-folded, apostrophes removed,
    hyphens read as spaces, white space collapsed: "Ñúñez-O'Hara" and "nunez ohara" are the same.
    """
    decomposed = unicodedata.normalize("NFKD", value.casefold())
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.translate(_LETTERS).translate(_APOSTROPHES).translate(_HYPHENS).split())


def mrn_index(mrn: str) -> str:
    """Blind index of a medical record number (case and white space insensitive)."""
    return blind_index(mrn, purpose="patient.mrn")


def name_dob_index(family_name: str, birth_date: datetime.date) -> str:
    """Blind index of family name + birth date, the front desk's second way to find a patient."""
    return blind_index(f"{family_name}|{birth_date.isoformat()}", purpose="patient.name_dob")


def family_name_index(family_name: str) -> str:
    """Blind index of the normalised surname (:func:`normalise_name`): the surname search, and the
    anomaly rules' same-surname check (a staff member's surname is indexed the same way)."""
    return blind_index(normalise_name(family_name), purpose="patient.family_name")


def given_name_index(given_name: str) -> str:
    """Blind index of the normalised given name(s), which narrows a surname search."""
    return blind_index(normalise_name(given_name), purpose="patient.given_name")


def address_index(address_line: str, postal_code: str) -> str:
    """Blind index of street address + postal code, for anomaly rules (same address); empty when unknown."""
    if not address_line.strip() or not postal_code.strip():
        return ""
    return blind_index(f"{address_line}|{postal_code}", purpose="patient.address")


def source_index(resource_type: str, resource_id: str) -> str:
    """Blind index of an imported resource's id in its source system ("Patient/<id>"), for idempotent imports.

    An id from another system links this record to the patient's record there, so it is kept only as
    an HMAC: a re-import finds the row, a reader of the table learns nothing.
    """
    return blind_index(f"{resource_type}/{resource_id}", purpose="import.source")
