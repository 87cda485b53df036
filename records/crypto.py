"""Blind indexes of the clinical record, on the project keyring (healthcrypt/crypto.py)."""

from __future__ import annotations

import datetime

from healthcrypt.crypto import blind_index


def mrn_index(mrn: str) -> str:
    """Blind index of a medical record number (case and white space insensitive)."""
    return blind_index(mrn, purpose="patient.mrn")


def name_dob_index(family_name: str, birth_date: datetime.date) -> str:
    """Blind index of family name + birth date, the front desk's second way to find a patient."""
    return blind_index(f"{family_name}|{birth_date.isoformat()}", purpose="patient.name_dob")


def family_name_index(family_name: str) -> str:
    """Blind index of the surname alone, for anomaly rules (same-surname lookups); never for search."""
    return blind_index(family_name, purpose="patient.family_name")


def address_index(address_line: str, postal_code: str) -> str:
    """Blind index of street address + postal code, for anomaly rules (same address); empty when unknown."""
    if not address_line.strip() or not postal_code.strip():
        return ""
    return blind_index(f"{address_line}|{postal_code}", purpose="patient.address")
