"""Patient data is encrypted before it reaches the database, and never comes back as ciphertext."""

from __future__ import annotations

import datetime

import pytest
from django.core.exceptions import FieldError
from django.db import connection
from django.test import override_settings

from healthcrypt.crypto import DecryptionError, generate_key
from records.crypto import mrn_index, name_dob_index
from records.models import Patient
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db

PLAINTEXT = {
    "mrn": "HC424242",
    "given_name": "Zebedee",
    "family_name": "Quaxlington",
    "birth_date": datetime.date(1961, 7, 14),
    "phone": "555-867-5309",
}


def raw_row(patient_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM records_patient WHERE id = %s", [patient_id])
        return " ".join(str(value) for value in cursor.fetchone())


def test_values_round_trip_with_their_python_types() -> None:
    patient = PatientFactory(**PLAINTEXT)
    loaded = Patient.objects.get(pk=patient.pk)
    assert loaded.family_name == "Quaxlington"
    assert loaded.birth_date == datetime.date(1961, 7, 14)
    assert isinstance(loaded.birth_date, datetime.date)


def test_raw_database_row_holds_no_plaintext() -> None:
    patient = PatientFactory(**PLAINTEXT)
    row = raw_row(patient.pk)
    for value in ("HC424242", "Zebedee", "Quaxlington", "1961-07-14", "867-5309"):
        assert value not in row
    assert row.count("hc2:test1:") >= 5


def test_blind_indexes_find_the_patient_without_decrypting() -> None:
    patient = PatientFactory(**PLAINTEXT)
    assert Patient.objects.get(mrn_index=mrn_index(" hc424242 ")).pk == patient.pk
    found = Patient.objects.filter(name_dob_index=name_dob_index("QUAXLINGTON", datetime.date(1961, 7, 14)))
    assert [p.pk for p in found] == [patient.pk]


def test_filtering_on_an_encrypted_column_is_refused_instead_of_matching_nothing() -> None:
    with pytest.raises(FieldError):
        list(Patient.objects.filter(family_name="Quaxlington"))
    with pytest.raises(FieldError):
        list(Patient.objects.filter(family_name__icontains="quax"))


def test_reading_with_the_wrong_key_fails_loudly() -> None:
    patient = PatientFactory(**PLAINTEXT)
    with override_settings(FIELD_ENCRYPTION_KEYS=f"other:{generate_key()}"), pytest.raises(DecryptionError):
        _ = Patient.objects.get(pk=patient.pk).family_name


def test_rotated_keyring_reads_old_values_and_writes_new_ones() -> None:
    patient = PatientFactory(**PLAINTEXT)
    from django.conf import settings

    with override_settings(FIELD_ENCRYPTION_KEYS=f"next:{generate_key()},{settings.FIELD_ENCRYPTION_KEYS}"):
        loaded = Patient.objects.get(pk=patient.pk)
        assert loaded.given_name == "Zebedee"
        loaded.save()
        assert "hc2:next:" in raw_row(patient.pk)


def test_ciphertext_copied_into_another_column_does_not_decrypt() -> None:
    patient = PatientFactory(**PLAINTEXT)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE records_patient SET given_name = family_name WHERE id = %s", [patient.pk])
    loaded = Patient.objects.get(pk=patient.pk)
    with pytest.raises(DecryptionError, match=f"records.Patient pk={patient.pk} field=given_name"):
        _ = loaded.given_name


def test_string_form_of_a_patient_carries_no_patient_data() -> None:
    patient = PatientFactory(**PLAINTEXT)
    assert str(patient) == f"Patient #{patient.pk}"


def test_validation_uses_the_wrapped_field_rules() -> None:
    from django.core.exceptions import ValidationError

    patient = Patient(**{**PLAINTEXT, "given_name": "x" * 101, "sex": "female"})
    with pytest.raises(ValidationError) as excinfo:
        patient.full_clean(exclude=["mrn_index", "name_dob_index"])
    assert "given_name" in excinfo.value.message_dict
