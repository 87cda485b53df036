"""Every encrypted value is bound to its row: a ciphertext moved to another row fails loudly.

Issue 8, attack 4: ``UPDATE records_medication SET dosage = (SELECT dosage FROM records_medication
WHERE id = 1) WHERE id = 15`` used to decrypt as the other patient's dose.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.conf import settings
from django.core.exceptions import FieldError
from django.core.management import call_command
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

from accounts.models import TOTPDevice
from healthcrypt.crypto import ColumnBoundRefused, DecryptionError, Keyring, row_identity
from healthcrypt.fields import EncryptedField, Sealed
from records import files
from records.models import Attachment, Medication, Observation, Patient
from tests.factories import PatientFactory, UserFactory, column_bound_token

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media_root(tmp_path: Path) -> Iterator[Path]:
    with override_settings(MEDIA_ROOT=tmp_path):
        yield tmp_path


def prescribe(patient: Patient, dosage: str) -> Medication:
    return Medication.objects.create(patient=patient, display="Warfarin", dosage=dosage, prescribed_at=timezone.now())


def raw(table: str, column: str, pk: Any) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])  # noqa: S608
        return cursor.fetchone()[0]


def set_raw(table: str, column: str, pk: Any, value: Any) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {column} = %s WHERE id = %s", [value, pk])  # noqa: S608


def test_dosage_copied_from_another_patients_prescription_fails_loudly() -> None:
    first = prescribe(PatientFactory(), "1 mg once daily")
    target = prescribe(PatientFactory(), "5 mg once daily")
    with connection.cursor() as cursor:
        # The attack of issue 8, item 4, verbatim but for the ids.
        cursor.execute(
            "UPDATE records_medication SET dosage = (SELECT dosage FROM records_medication WHERE id = %s) WHERE id = %s",
            [first.pk, target.pk],
        )
    loaded = Medication.objects.get(pk=target.pk)
    with pytest.raises(DecryptionError) as excinfo:
        _ = loaded.dosage
    message = str(excinfo.value)
    assert f"records.Medication pk={target.pk} field=dosage" in message
    assert "failed authentication" in message
    assert "1 mg" not in message
    assert raw("records_medication", "dosage", target.pk) not in message
    # The rest of the row is untouched and still reads.
    assert loaded.display == "Warfarin"


def test_names_swapped_between_two_patients_fail_loudly() -> None:
    alice = PatientFactory(family_name="Quaxlington")
    bob = PatientFactory(family_name="Zebedeeson")
    a, b = raw("records_patient", "family_name", alice.pk), raw("records_patient", "family_name", bob.pk)
    set_raw("records_patient", "family_name", alice.pk, b)
    set_raw("records_patient", "family_name", bob.pk, a)
    for patient in (alice, bob):
        with pytest.raises(DecryptionError, match=f"records.Patient pk={patient.pk} field=family_name"):
            _ = Patient.objects.get(pk=patient.pk).family_name


def test_swapping_row_uid_between_two_rows_breaks_both_rows() -> None:
    first = prescribe(PatientFactory(), "1 mg")
    second = prescribe(PatientFactory(), "5 mg")
    one, two = raw("records_medication", "row_uid", first.pk), raw("records_medication", "row_uid", second.pk)
    # Through a spare value, as row_uid is unique. On PostgreSQL this is itself a change of a
    # clinical row, which the direct-change trigger records (docs/decisions/0007).
    spare = uuid.uuid4().hex if connection.vendor == "sqlite" else uuid.uuid4()
    set_raw("records_medication", "row_uid", first.pk, spare)
    set_raw("records_medication", "row_uid", second.pk, one)
    set_raw("records_medication", "row_uid", first.pk, two)
    for medication in (first, second):
        with pytest.raises(DecryptionError, match=f"pk={medication.pk} field=dosage"):
            _ = Medication.objects.get(pk=medication.pk).dosage
    if connection.vendor == "postgresql":
        # Each of the three UPDATEs is recorded as a change of a clinical row. (Whether its marker
        # verifies is the sealer's business; inside this test's single transaction the factories'
        # marker is still set, so it is not checked here: see tests/audit/test_postgres_guards.py.)
        from audit.models import DirectChange

        swaps = DirectChange.objects.filter(
            table_name__endswith="records_medication", operation="UPDATE", row_id__in=[first.pk, second.pk]
        )
        assert swaps.count() == 3


def test_a_column_bound_value_is_refused_unless_the_operator_allows_it() -> None:
    patient = PatientFactory(given_name="Zebedee")
    set_raw(
        "records_patient", "given_name", patient.pk, column_bound_token("Tina", context="records.Patient.given_name")
    )
    with pytest.raises(ColumnBoundRefused, match=rf"records\.Patient pk={patient.pk} field=given_name: .*column-bound"):
        _ = Patient.objects.get(pk=patient.pk).given_name
    with override_settings(FIELD_ENCRYPTION_ACCEPT_COLUMN_BOUND=True):
        loaded = Patient.objects.get(pk=patient.pk)
        assert loaded.given_name == "Tina"
        # Any save binds it to its row.
        loaded.save()
    assert raw("records_patient", "given_name", patient.pk).startswith("hc2:test1:")
    assert Patient.objects.get(pk=patient.pk).given_name == "Tina"


def test_update_and_bulk_update_of_an_encrypted_field_are_refused() -> None:
    medication = prescribe(PatientFactory(), "1 mg")
    # Both mark the surrounding transaction for rollback on error: give each a savepoint of its own.
    with pytest.raises(FieldError, match=r"records\.Medication\.dosage is encrypted and bound to its row"):  # noqa: SIM117
        with transaction.atomic():
            Medication.objects.filter(pk=medication.pk).update(dosage="10 mg")
    medication.dosage = "10 mg"
    with pytest.raises(FieldError, match="bound to its row"), transaction.atomic():
        Medication.objects.bulk_update([medication], ["dosage"])
    assert Medication.objects.get(pk=medication.pk).dosage == "1 mg"
    # Plain columns still update in bulk.
    assert Medication.objects.filter(pk=medication.pk).update(status=Medication.Status.STOPPED) == 1


def test_bulk_create_binds_each_row_to_its_own_identity() -> None:
    patient = PatientFactory()
    created = Medication.objects.bulk_create(
        [
            Medication(patient=patient, display=f"Drug {i}", dosage=f"{i} mg", prescribed_at=timezone.now())
            for i in range(3)
        ]
    )
    assert len({m.row_uid for m in created}) == 3
    loaded = Medication.objects.filter(patient=patient).order_by("pk")
    assert [m.dosage for m in loaded] == ["0 mg", "1 mg", "2 mg"]


def test_values_list_hands_out_sealed_values_never_plaintext() -> None:
    medication = prescribe(PatientFactory(), "1 mg once daily")
    sealed, row_uid = Medication.objects.values_list("dosage", "row_uid").get(pk=medication.pk)
    assert isinstance(sealed, Sealed)
    assert "1 mg" not in str(sealed)
    assert "1 mg" not in repr(sealed)
    assert "hc2" not in str(sealed)
    assert sealed.open(row_uid=row_uid) == "1 mg once daily"
    other = prescribe(PatientFactory(), "5 mg")
    with pytest.raises(DecryptionError, match=f"records.Medication row={other.row_uid} field=dosage"):
        Medication.objects.values_list("dosage", flat=True).get(pk=medication.pk).open(row_uid=other.row_uid)


def test_deferred_loading_and_refresh_still_know_the_row(django_assert_num_queries: Any) -> None:
    medication = prescribe(PatientFactory(), "1 mg")
    only = Medication.objects.only("id", "dosage").get(pk=medication.pk)
    assert only.dosage == "1 mg"  # the row identity is read once, from the database
    deferred = Medication.objects.defer("dosage").get(pk=medication.pk)
    with django_assert_num_queries(1):
        assert deferred.dosage == "1 mg"
    deferred.dosage = "2 mg"
    deferred.save()
    deferred.refresh_from_db(fields=["dosage"])
    assert deferred.dosage == "2 mg"
    # A changed row_uid in memory does not redirect the decryption of what was loaded.
    fresh = Medication.objects.get(pk=medication.pk)
    fresh.row_uid = uuid.uuid4()
    assert fresh.dosage == "2 mg"


def test_an_untouched_value_is_written_back_as_it_is() -> None:
    medication = prescribe(PatientFactory(), "1 mg")
    before = raw("records_medication", "dosage", medication.pk)
    loaded = Medication.objects.get(pk=medication.pk)
    loaded.status = Medication.Status.COMPLETED
    loaded.save()
    assert raw("records_medication", "dosage", medication.pk) == before
    loaded.dosage = "3 mg"
    loaded.save()
    assert raw("records_medication", "dosage", medication.pk) != before


# --- Attachments ----------------------------------------------------------------------------------


def attach(patient: Patient, content: bytes) -> Attachment:
    row_uid = uuid.uuid4()
    stored = files.store_encrypted(io.BytesIO(content), max_bytes=10_000_000, row_uid=row_uid)
    return Attachment.objects.create(
        row_uid=row_uid,
        patient=patient,
        kind=Attachment.Kind.IMAGING,
        filename="scan.dcm",
        content_type="application/dicom",
        sha256=stored.sha256,
        size=stored.size,
        storage_name=stored.storage_name,
        key_id=stored.key_id,
        uploaded_by=UserFactory(),
        uploaded_at=timezone.now(),
    )


def test_an_attachment_row_pointed_at_another_rows_file_fails_on_opening() -> None:
    mine = attach(PatientFactory(), b"my scan" * 20000)
    theirs = attach(PatientFactory(), b"their scan" * 20000)
    # Swap the storage names (through a spare value: the column is unique).
    set_raw("records_attachment", "storage_name", mine.pk, "0" * 32)
    set_raw("records_attachment", "storage_name", theirs.pk, mine.storage_name)
    set_raw("records_attachment", "storage_name", mine.pk, theirs.storage_name)
    row = Attachment.objects.get(pk=mine.pk)
    with pytest.raises(DecryptionError, match="not the file of this attachment row"):
        files.open_decrypted(row.storage_name, row_uid=row.row_uid)


def store_unbound(content: bytes) -> files.StoredFile:
    """A format 1 file (bound to its storage name only), as stored before row binding."""
    kid = Keyring.parse(settings.FIELD_ENCRYPTION_KEYS).current_kid
    storage_name = secrets.token_hex(16)
    salt, prefix = secrets.token_bytes(files.SALT_BYTES), secrets.token_bytes(files.NONCE_PREFIX_BYTES)
    encoded = kid.encode()
    header = files.MAGIC + bytes((1, len(encoded))) + encoded + salt + prefix
    cipher = Keyring.parse(settings.FIELD_ENCRYPTION_KEYS).derive_cipher(kid, salt=salt, info=b"healthcrypt file v1")
    chunks = [content[i : i + files.CHUNK_BYTES] for i in range(0, len(content), files.CHUNK_BYTES)] or [b""]
    if len(chunks[-1]) == files.CHUNK_BYTES:
        chunks.append(b"")
    body = b""
    for index, chunk in enumerate(chunks):
        position = index.to_bytes(4, "big") + (b"\x01" if index == len(chunks) - 1 else b"\x00")
        body += cipher.encrypt(prefix + position, chunk, header + storage_name.encode() + position)
    files.attachments_dir().mkdir(parents=True, exist_ok=True)
    (files.attachments_dir() / storage_name).write_bytes(header + body)
    return files.StoredFile(storage_name, kid, hashlib.sha256(content).hexdigest(), len(content))


def test_a_file_bound_to_its_storage_name_only_is_refused_unless_allowed() -> None:
    stored = store_unbound(b"old scan" * 10000)
    row = uuid.uuid4()
    with pytest.raises(DecryptionError, match="format 1"):
        files.open_decrypted(stored.storage_name, row_uid=row)
    with (
        override_settings(FIELD_ENCRYPTION_ACCEPT_COLUMN_BOUND=True),
        files.open_decrypted(stored.storage_name, row_uid=row) as chunks,
    ):
        assert b"".join(chunks) == b"old scan" * 10000


# --- Moving existing rows: rotate_keys ------------------------------------------------------------


def encrypted_tables() -> list[tuple[str, list[str]]]:
    found = []
    for model in apps.get_models():
        columns = [f.column for f in model._meta.local_concrete_fields if isinstance(f, EncryptedField)]
        if columns and not model._meta.proxy:
            found.append((model._meta.db_table, columns))
    return found


def every_token() -> list[str]:
    tokens = []
    with connection.cursor() as cursor:
        for table, columns in encrypted_tables():
            cursor.execute(f"SELECT {', '.join(columns)} FROM {table}")  # noqa: S608
            tokens += [token for row in cursor.fetchall() for token in row if token is not None]
    return tokens


def downgrade_to_column_bound() -> int:
    """Rewrite every stored value as the hc1 token the column-bound format would have written."""
    keyring = Keyring.parse(settings.FIELD_ENCRYPTION_KEYS)
    count = 0
    for model in apps.get_models():
        fields = [f for f in model._meta.local_concrete_fields if isinstance(f, EncryptedField)]
        if not fields:
            continue
        with connection.cursor() as cursor:
            names = ", ".join(f.column for f in fields)
            cursor.execute(f"SELECT id, row_uid, {names} FROM {model._meta.db_table}")  # noqa: S608
            for pk, row_uid, *tokens in cursor.fetchall():
                for field, token in zip(fields, tokens, strict=True):
                    if token is None:
                        continue
                    plaintext = keyring.decrypt(token, context=field.context, row=row_identity(row_uid))
                    legacy = column_bound_token(plaintext.decode(), context=field.context)
                    set_raw(model._meta.db_table, field.column, pk, legacy)
                    count += 1
    return count


def test_rotate_keys_binds_every_value_and_file_of_every_model_to_its_row(
    django_capture_on_commit_callbacks: Any,
) -> None:
    staff = UserFactory()
    patient = PatientFactory(family_name="Quaxlington")
    prescribe(patient, "1 mg")
    Observation.objects.create(
        patient=patient, category="laboratory", display="Hb", value="13.5", unit="g/dL", effective_at=timezone.now()
    )
    device = TOTPDevice.objects.create(user=staff, name="Phone", confirmed=True)
    secret = device.key
    attachment = attach(patient, b"fresh scan")
    old = store_unbound(b"legacy scan" * 9000)
    legacy = Attachment.objects.create(
        patient=patient,
        kind=Attachment.Kind.IMAGING,
        filename="old.dcm",
        content_type="application/dicom",
        sha256=old.sha256,
        size=old.size,
        storage_name=old.storage_name,
        key_id=old.key_id,
        file_format=1,
        uploaded_by=staff,
        uploaded_at=timezone.now(),
    )
    total = downgrade_to_column_bound()
    assert total >= 20
    assert all(token.startswith("hc1:test1:") for token in every_token())

    report = io.StringIO()
    call_command("rotate_keys", "--report-only", stdout=report)
    assert f"Column-bound values left: {total}; files not bound to their row: 1" in report.getvalue()

    out = io.StringIO()
    # FIELD_ENCRYPTION_ACCEPT_COLUMN_BOUND is off: rotate_keys reads hc1 whatever it says.
    with django_capture_on_commit_callbacks(execute=True):
        call_command("rotate_keys", stdout=out, stderr=io.StringIO())
    assert f"Re-encrypted {total} values" in out.getvalue()
    assert "and 1 files" in out.getvalue()
    assert all(token.startswith("hc2:test1:") for token in every_token())
    assert "Column-bound values left: 0; files not bound to their row: 0." in out.getvalue()

    # Everything reads back with the setting off.
    assert Patient.objects.get(pk=patient.pk).family_name == "Quaxlington"
    assert Medication.objects.get(patient=patient).dosage == "1 mg"
    assert TOTPDevice.objects.get(pk=device.pk).key == secret
    legacy.refresh_from_db()
    assert legacy.file_format == files.FORMAT_VERSION
    with files.open_decrypted(legacy.storage_name, row_uid=legacy.row_uid) as chunks:
        assert b"".join(chunks) == b"legacy scan" * 9000
    assert Attachment.objects.get(pk=attachment.pk).storage_name == attachment.storage_name

    tokens = every_token()
    again = io.StringIO()
    call_command("rotate_keys", stdout=again, stderr=io.StringIO())
    assert "Re-encrypted 0 values in 0 rows and 0 files" in again.getvalue()
    assert every_token() == tokens
