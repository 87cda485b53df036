"""``manage.py rotate_keys`` moves every encrypted value and file to the current key, safely and resumably."""

from __future__ import annotations

import datetime
import io
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import OperationalError, connection
from django.test import override_settings
from django.utils import timezone

from accounts.models import TOTPDevice, User
from healthcrypt.crypto import Keyring, generate_key
from healthcrypt.fields import EncryptedField
from records.files import attachments_dir, file_key_id, open_decrypted, store_encrypted
from records.management.commands import rotate_keys
from records.models import Attachment, Observation, Patient
from records.rotation import attachments as file_rotation
from records.rotation import values as value_rotation
from tests.factories import PatientFactory, UserFactory

pytestmark = pytest.mark.django_db

SCAN = b"DICOM-ish scan of Quaxlington " * 5000  # about 150 KB: three chunks
SNAPSHOT_MODELS = ("records.Patient", "records.Observation", "accounts.TOTPDevice", "records.Attachment")


@pytest.fixture(autouse=True)
def media_root(tmp_path: Path) -> Iterator[Path]:
    with override_settings(MEDIA_ROOT=tmp_path):
        yield tmp_path


@pytest.fixture
def new_key() -> Callable[[], AbstractContextManager[None]]:
    """Prepends key 'new' to the test ring, as an operator would before running rotate_keys."""
    keys = f"new:{generate_key()},{settings.FIELD_ENCRYPTION_KEYS}"
    return lambda: override_settings(FIELD_ENCRYPTION_KEYS=keys)


def add_observation(patient: Patient, value: str) -> Observation:
    return Observation.objects.create(
        patient=patient,
        category=Observation.Category.LABORATORY,
        loinc_code="718-7",
        display="Haemoglobin",
        value=value,
        unit="g/dL",
        effective_at=timezone.now(),
    )


def add_attachment(patient: Patient, uploader: User, content: bytes = SCAN) -> Attachment:
    row_uid = uuid.uuid4()
    stored = store_encrypted(io.BytesIO(content), max_bytes=10_000_000, row_uid=row_uid)
    return Attachment.objects.create(
        row_uid=row_uid,
        patient=patient,
        kind=Attachment.Kind.IMAGING,
        filename="chest-xray.dcm",
        content_type="application/dicom",
        sha256=stored.sha256,
        size=stored.size,
        storage_name=stored.storage_name,
        key_id=stored.key_id,
        uploaded_by=uploader,
        uploaded_at=timezone.now(),
    )


@pytest.fixture
def records() -> dict[str, Any]:
    """Five patients with two observations each, a TOTP device and two attachments, under key test1."""
    staff = UserFactory()
    patients = [
        PatientFactory(family_name=f"Quaxlington{i}", birth_date=datetime.date(1960 + i, 1, 2)) for i in range(5)
    ]
    for i, patient in enumerate(patients):
        add_observation(patient, f"{12 + i}.5")
        add_observation(patient, f"{100 + i}")
    device = TOTPDevice.objects.create(user=staff, name="Phone", confirmed=True)
    attachments = [add_attachment(patients[0], staff), add_attachment(patients[1], staff, b"small document")]
    return {"staff": staff, "patients": patients, "device": device, "attachments": attachments}


def encrypted_columns() -> list[tuple[str, str, list[str]]]:
    """(label, table, encrypted columns) of every model, found independently of the command."""
    found = []
    for model in apps.get_models():
        columns = [f.column for f in model._meta.local_concrete_fields if isinstance(f, EncryptedField)]
        if columns and not model._meta.proxy:
            found.append((model._meta.label, model._meta.db_table, columns))
    return found


def raw_tokens(table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, {', '.join(qn(c) for c in columns)} FROM {qn(table)} ORDER BY id")  # noqa: S608
        return cursor.fetchall()


def every_token() -> list[str]:
    return [
        token
        for _label, table, columns in encrypted_columns()
        for row in raw_tokens(table, columns)
        for token in row[1:]
        if token is not None
    ]


def key_ids() -> set[str]:
    return {token.split(":")[1] for token in every_token()}


def snapshot() -> dict[str, list[dict[str, Any]]]:
    """Every field of the models under test, read (and decrypted) through the ORM."""
    result = {}
    for label in SNAPSHOT_MODELS:
        model = apps.get_model(label)
        names = [
            f.attname for f in model._meta.concrete_fields if f.name not in {"storage_name", "key_id", "file_format"}
        ]
        # Through instances: values() hands encrypted fields out sealed, never as plaintext.
        result[label] = [{name: getattr(row, name) for name in names} for row in model.objects.order_by("pk")]
    return result


def run(*args: str, stderr: io.StringIO | None = None) -> str:
    out = io.StringIO()
    call_command("rotate_keys", *args, stdout=out, stderr=stderr or io.StringIO())
    return out.getvalue()


def test_every_model_with_encrypted_fields_is_covered() -> None:
    labels = {table.label for table in rotate_keys.encrypted_tables()}
    assert labels == {label for label, _table, _columns in encrypted_columns()}
    assert {"accounts.TOTPDevice", "records.Patient", "records.Observation", "records.Attachment"} <= labels
    patient = next(t for t in rotate_keys.encrypted_tables() if t.label == "records.Patient")
    assert {c.context for c in patient.columns} >= {"records.Patient.mrn", "records.Patient.family_name"}


def test_rotation_moves_every_value_and_file_to_the_new_key(
    records: dict[str, Any],
    new_key: Callable[[], AbstractContextManager[None]],
    media_root: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    before = snapshot()
    old_files = [a.storage_name for a in records["attachments"]]
    assert key_ids() == {"test1"}

    with new_key():
        with django_capture_on_commit_callbacks(execute=True):
            output = run("--batch-size", "3")

        # Raw SQL: every encrypted column of every table, Patient, Observation and TOTPDevice included.
        for label, table, columns in encrypted_columns():
            for row in raw_tokens(table, columns):
                for token in row[1:]:
                    assert token is None or token.startswith("hc2:new:"), (label, row[0])
        for table in ("records_patient", "records_observation", "accounts_totpdevice"):
            assert raw_tokens(table, ["id"]), f"{table} holds no row to check"
        # The data reads back identical.
        assert snapshot() == before
        assert TOTPDevice.objects.get().bin_key == records["device"].bin_key
        # Files: new names under the new key, same content, old files gone.
        for attachment, old_name in zip(records["attachments"], old_files, strict=True):
            attachment.refresh_from_db()
            assert attachment.key_id == "new"
            assert attachment.storage_name != old_name
            assert file_key_id(attachment.storage_name) == "new"
            with open_decrypted(attachment.storage_name, row_uid=attachment.row_uid) as chunks:
                assert len(b"".join(chunks)) == attachment.size
            assert not (attachments_dir() / old_name).exists()
        assert sorted(p.name for p in attachments_dir().iterdir()) == sorted(
            a.storage_name for a in Attachment.objects.all()
        )

    values = len(every_token())
    assert f"Re-encrypted {values} values" in output
    assert "and 2 files under key 'new'" in output
    assert "Quaxlington" not in output


def test_old_data_stays_readable_mid_rotation_and_a_rerun_finishes(
    records: dict[str, Any],
    new_key: Callable[[], AbstractContextManager[None]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = snapshot()
    original = rotate_keys.Command._write_batch
    calls = []

    def interrupted_after_one_batch(self: rotate_keys.Command, *args: Any) -> tuple[int, int]:
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(rotate_keys.Command, "_write_batch", interrupted_after_one_batch)
    with new_key():
        with pytest.raises(CommandError, match="Run the command again") as excinfo:
            run("--batch-size", "2")
        assert excinfo.value.returncode == 130

        # One batch of two rows of the first table is done; everything else is still under test1.
        assert key_ids() == {"new", "test1"}
        assert 0 < sum(t.startswith("hc2:new:") for t in every_token()) < len(every_token())
        # Mixed keys read back transparently.
        assert snapshot() == before

        monkeypatch.setattr(rotate_keys.Command, "_write_batch", original)
        run("--batch-size", "2")
        assert key_ids() == {"new"}
        assert snapshot() == before


def test_a_rerun_after_completion_changes_and_decrypts_nothing(
    records: dict[str, Any],
    new_key: Callable[[], AbstractContextManager[None]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with new_key():
        run()
        tokens = every_token()
        files = sorted(p.name for p in attachments_dir().iterdir())

        decrypted = []
        original = Keyring.decrypt

        def counting(self: Keyring, token: str, *, context: str, **kwargs: Any) -> bytes:
            decrypted.append(context)
            return original(self, token, context=context, **kwargs)

        monkeypatch.setattr(Keyring, "decrypt", counting)
        output = run()

    assert decrypted == []
    assert every_token() == tokens
    assert sorted(p.name for p in attachments_dir().iterdir()) == files
    assert "Re-encrypted 0 values in 0 rows and 0 files" in output


def test_current_values_are_never_decrypted_while_rotating(
    records: dict[str, Any],
    new_key: Callable[[], AbstractContextManager[None]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with new_key():
        patient = records["patients"][2]
        patient.save()  # now entirely under 'new'
        decrypted = []
        original = Keyring.decrypt

        def counting(self: Keyring, token: str, *, context: str, **kwargs: Any) -> bytes:
            decrypted.append((context, token.split(":")[1]))
            return original(self, token, context=context, **kwargs)

        monkeypatch.setattr(Keyring, "decrypt", counting)
        run()
    # The file pass reads each attachment's recorded digest (by then under 'new') to verify the copy.
    fields = [(context, kid) for context, kid in decrypted if context != "records.Attachment.sha256"]
    assert fields
    assert all(kid == "test1" for _context, kid in fields)


def test_report_counts_values_and_files_per_key(
    records: dict[str, Any], new_key: Callable[[], AbstractContextManager[None]]
) -> None:
    values = len(every_token())
    with new_key():
        before = run("--report-only")
        assert key_ids() == {"test1"}  # a report writes nothing
        run()
        after = run("--report-only", "--verbosity", "2")

    # key id, values, of which column-bound, files, status
    lines = {line.split()[0]: line.split() for line in before.splitlines()[2:4]}
    assert lines["new"][1:5] == ["0", "0", "0", "current"]
    assert lines["test1"][1:4] == [str(values), "0", "2"]
    assert "still in use" in before
    lines = {line.split()[0]: line.split() for line in after.splitlines()[2:4]}
    assert lines["new"][1:4] == [str(values), "0", "2"]
    assert lines["test1"][1:4] == ["0", "0", "0"]
    assert "Column-bound values left: 0; files not bound to their row: 0." in after
    assert "unused: can be retired" in after
    assert "records.Observation: new: 40" in after  # 10 observations x 4 encrypted fields
    assert "Re-encrypted" not in after


def test_dry_run_counts_without_writing(
    records: dict[str, Any], new_key: Callable[[], AbstractContextManager[None]]
) -> None:
    tokens = every_token()
    names = sorted(a.storage_name for a in Attachment.objects.all())
    with new_key():
        output = run("--dry-run")
    assert every_token() == tokens
    assert sorted(a.storage_name for a in Attachment.objects.all()) == names
    assert f"Would re-encrypt {len(tokens)} values" in output
    assert "and 2 files" in output
    assert "nothing was written" in output


def test_undecryptable_values_are_reported_and_the_rest_is_rotated(
    records: dict[str, Any], new_key: Callable[[], AbstractContextManager[None]]
) -> None:
    lost = Keyring.parse(f"ghost:{generate_key()}")
    first, second = Observation.objects.order_by("pk")[:2]
    ghost_token = lost.encrypt(b"13.5", context="records.Observation.value", row=str(first.row_uid))
    with connection.cursor() as cursor:
        cursor.execute("UPDATE records_observation SET value = %s WHERE id = %s", [ghost_token, first.pk])
        cursor.execute(
            "UPDATE records_observation SET unit = %s WHERE id = %s",
            ["hc1:test1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", second.pk],
        )
        cursor.execute("UPDATE records_observation SET display = %s WHERE id = %s", ["Quaxlington", second.pk])
    stderr = io.StringIO()
    out = io.StringIO()
    with new_key(), pytest.raises(CommandError, match="3 value") as excinfo:
        call_command("rotate_keys", stdout=out, stderr=stderr)
    assert excinfo.value.returncode == 1

    problems = stderr.getvalue()
    assert f"records.Observation pk={first.pk} field=value: No key with id 'ghost'" in problems
    assert f"records.Observation pk={second.pk} field=unit: " in problems
    assert f"records.Observation pk={second.pk} field=display: " in problems
    output = out.getvalue() + problems
    for secret in (ghost_token, "AAAAAAAAAAAAAAAA", "Quaxlington", "13.5"):
        assert secret not in output
    # Everything else moved on; the three values stay where they were.
    assert sum(not t.startswith("hc2:new:") for t in every_token()) == 3
    report = out.getvalue()
    assert "ghost" in report
    assert "NOT IN THE KEYRING" in report
    assert "(not a ciphertext)" in report


def test_a_concurrent_write_is_not_overwritten_with_stale_data(
    records: dict[str, Any],
    new_key: Callable[[], AbstractContextManager[None]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = Observation.objects.order_by("pk").first()
    original = rotate_keys.Command._reencrypt_rows

    def app_writes_meanwhile(self: rotate_keys.Command, table: Any, rows: Any, totals: Any, **kwargs: Any) -> Any:
        updates = original(self, table, rows, totals, **kwargs)
        if table.label == "records.Observation" and kwargs["report"]:
            # The application saves a corrected value between our read and our write.
            corrected = Observation.objects.get(pk=target.pk)
            corrected.value = "14.1"
            corrected.save(update_fields=["value"])
        return updates

    monkeypatch.setattr(rotate_keys.Command, "_reencrypt_rows", app_writes_meanwhile)
    with new_key():
        output = run()
        target.refresh_from_db()
    assert target.value == "14.1"
    assert target.display == "Haemoglobin"
    assert key_ids() == {"new"}
    assert "1 value(s) or file(s) changed while this ran" in output


def test_an_unreadable_file_is_reported_and_left_in_place(
    records: dict[str, Any],
    new_key: Callable[[], AbstractContextManager[None]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    broken = records["attachments"][0]
    path = attachments_dir() / broken.storage_name
    path.write_bytes(path.read_bytes()[:-10])
    stderr = io.StringIO()
    with new_key():
        with pytest.raises(CommandError, match="1 value"), django_capture_on_commit_callbacks(execute=True):
            call_command("rotate_keys", stdout=io.StringIO(), stderr=stderr)
        broken.refresh_from_db()
        other = Attachment.objects.exclude(pk=broken.pk).get()
    assert f"records.Attachment pk={broken.pk} field=file: Stored file {broken.storage_name}" in stderr.getvalue()
    assert broken.key_id == "test1"
    assert path.exists()
    assert other.key_id == "new"
    # No stray copy of the broken file was left behind.
    assert sorted(p.name for p in attachments_dir().iterdir()) == sorted([broken.storage_name, other.storage_name])


def test_a_file_replaced_meanwhile_keeps_the_replacement(
    records: dict[str, Any],
    new_key: Callable[[], AbstractContextManager[None]],
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    attachment = records["attachments"][1]
    original_name = attachment.storage_name
    original = file_rotation.reencrypt_file
    replacement: list[str] = []

    def replaced_meanwhile(storage_name: str, **kwargs: Any) -> Any:
        copy = original(storage_name, **kwargs)
        if storage_name == original_name:
            stored = store_encrypted(io.BytesIO(b"corrected document"), max_bytes=1000, row_uid=attachment.row_uid)
            Attachment.objects.filter(pk=attachment.pk).update(storage_name=stored.storage_name, key_id="new")
            replacement.append(stored.storage_name)
        return copy

    # Patched where the file pass looks it up (records/rotation/attachments.py).
    monkeypatch.setattr(file_rotation, "reencrypt_file", replaced_meanwhile)
    with new_key():
        with django_capture_on_commit_callbacks(execute=True):
            output = run()
        attachment.refresh_from_db()
        current = {a.storage_name for a in Attachment.objects.all()}
    assert attachment.storage_name == replacement[0]
    # Our copy is gone; the old file is left to whoever replaced it.
    assert {p.name for p in attachments_dir().iterdir()} == current | {original_name}
    assert "and 1 files" in output
    assert "1 value(s) or file(s) changed while this ran" in output


def test_progress_line_only_on_a_terminal(
    records: dict[str, Any], new_key: Callable[[], AbstractContextManager[None]]
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, quiet, piped = Terminal(), Terminal(), io.StringIO()
    with new_key():
        run("--dry-run", stderr=terminal)
        run("--dry-run", "--no-progress", stderr=quiet)
        run("--dry-run", stderr=piped)
    assert "\rrotate_keys: " in terminal.getvalue()
    assert "values/s" in terminal.getvalue()
    assert "Quaxlington" not in terminal.getvalue()
    assert quiet.getvalue() == ""
    assert piped.getvalue() == ""


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(CommandError, match="at least 1"):
        run("--batch-size", "0")


def test_report_counts_files_that_no_attachment_refers_to(records: dict[str, Any]) -> None:
    assert "Files on disk that no attachment refers to: 0." in run("--report-only")
    # An upload killed between writing its file and saving its row.
    store_encrypted(io.BytesIO(b"orphaned upload"), max_bytes=1000, row_uid=uuid.uuid4())
    assert "Files on disk that no attachment refers to: 1 (test1: 1)" in run("--report-only")


def test_dry_run_checks_that_each_file_is_readable(
    records: dict[str, Any], new_key: Callable[[], AbstractContextManager[None]]
) -> None:
    with override_settings(FIELD_ENCRYPTION_KEYS=f"ghost:{generate_key()}"):
        stored = store_encrypted(io.BytesIO(b"scan"), max_bytes=1000, row_uid=records["attachments"][1].row_uid)
    attachment = records["attachments"][1]
    Attachment.objects.filter(pk=attachment.pk).update(storage_name=stored.storage_name, key_id="ghost")
    missing = records["attachments"][0]
    (attachments_dir() / missing.storage_name).unlink()
    stderr = io.StringIO()
    with new_key(), pytest.raises(CommandError, match="2 value"):
        call_command("rotate_keys", "--dry-run", stdout=io.StringIO(), stderr=stderr)
    assert f"pk={attachment.pk} field=file: stored file {stored.storage_name} is under unknown key 'ghost'" in (
        stderr.getvalue()
    )
    assert f"pk={missing.pk} field=file: stored file {missing.storage_name} unreadable (FileNotFoundError)" in (
        stderr.getvalue()
    )


@pytest.mark.django_db(transaction=True)
def test_a_batch_hit_by_a_lock_conflict_is_retried_and_old_files_go_once_committed(
    records: dict[str, Any],
    new_key: Callable[[], AbstractContextManager[None]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A real transaction per batch here (no test transaction around it), as in production.
    original = rotate_keys.Command._write_batch
    failures = [OperationalError("deadlock detected")]

    def deadlocked_once(self: rotate_keys.Command, *args: Any) -> tuple[int, int]:
        if failures:
            raise failures.pop()
        return original(self, *args)

    monkeypatch.setattr(rotate_keys.Command, "_write_batch", deadlocked_once)
    monkeypatch.setattr(value_rotation.time, "sleep", lambda seconds: None)
    old_files = {a.storage_name for a in records["attachments"]}
    with new_key():
        run()
        current_files = {a.storage_name for a in Attachment.objects.all()}
    assert key_ids() == {"new"}
    assert "hit a lock conflict; retrying" in caplog.text
    # on_commit ran for real: only the new copies are left.
    assert {p.name for p in attachments_dir().iterdir()} == current_files
    assert not current_files & old_files


def test_a_file_whose_recorded_digest_cannot_be_read_is_still_rotated_and_verified(
    records: dict[str, Any], new_key: Callable[[], AbstractContextManager[None]]
) -> None:
    attachment = records["attachments"][0]
    ghost = Keyring.parse(f"ghost:{generate_key()}").encrypt(
        b"0" * 64, context="records.Attachment.sha256", row=str(attachment.row_uid)
    )
    with connection.cursor() as cursor:
        cursor.execute("UPDATE records_attachment SET sha256 = %s WHERE id = %s", [ghost, attachment.pk])
    stderr = io.StringIO()
    with new_key(), pytest.raises(CommandError, match="1 value"):
        call_command("rotate_keys", stdout=io.StringIO(), stderr=stderr)
    assert f"records.Attachment pk={attachment.pk} field=sha256: No key with id 'ghost'" in stderr.getvalue()
    assert Attachment.objects.values_list("key_id", flat=True).get(pk=attachment.pk) == "new"


@pytest.mark.django_db(transaction=True)
def test_an_old_file_that_cannot_be_deleted_is_reported(
    records: dict[str, Any],
    new_key: Callable[[], AbstractContextManager[None]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old_names = {a.storage_name for a in records["attachments"]}
    original = file_rotation.delete_stored

    def read_only_old_files(storage_name: str) -> None:
        if storage_name in old_names:
            raise PermissionError(13, "Permission denied")
        original(storage_name)

    monkeypatch.setattr(file_rotation, "delete_stored", read_only_old_files)
    stderr = io.StringIO()
    with new_key():
        with pytest.raises(CommandError, match="2 value"):
            call_command("rotate_keys", stdout=io.StringIO(), stderr=stderr)
        keys = set(Attachment.objects.values_list("key_id", flat=True))
    assert keys == {"new"}
    for attachment in records["attachments"]:
        assert (
            f"records.Attachment pk={attachment.pk} field=file: old file {attachment.storage_name} not deleted "
            "(Permission denied)"
        ) in stderr.getvalue()
        assert (attachments_dir() / attachment.storage_name).exists()


def test_rotation_covers_appointments_and_medication_frequency(
    new_key: Callable[[], AbstractContextManager[None]], django_capture_on_commit_callbacks: Any
) -> None:
    from accounts.models import Department
    from records.models import Appointment, Medication
    from records.services import appointment_book, medication_prescribe
    from tests.factories import assign

    labels = {table.label: {c.context for c in table.columns} for table in rotate_keys.encrypted_tables()}
    assert "records.Appointment.reason" in labels["records.Appointment"]
    assert "records.Medication.frequency" in labels["records.Medication"]
    physician = UserFactory()
    patient = PatientFactory()
    assign(physician, patient)
    medication_prescribe(actor=physician, patient_id=patient.pk, display="Drug", dosage="1", frequency="q6h")
    clinic = Department.objects.create(code="rot-clinic", name="Rotation clinic", kind=Department.Kind.OUTPATIENT)
    appointment_book(
        actor=None,
        patient_id=patient.pk,
        department_id=clinic.pk,
        starts_at=timezone.now() + datetime.timedelta(hours=1),
        duration_minutes=10,
        reason="Review",
    )
    with new_key():
        with django_capture_on_commit_callbacks(execute=True):
            run()
        for table, column in (("records_appointment", "reason"), ("records_medication", "frequency")):
            assert all(row[1].startswith("hc2:new:") for row in raw_tokens(table, [column]))
        assert Appointment.objects.get().reason == "Review"
        assert Medication.objects.get().frequency == "q6h"
