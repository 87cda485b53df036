"""Signed checkpoints outside the database catch what the chains alone cannot: a tail deleted with its head rewritten."""

from __future__ import annotations

import json
import os
import socket
import stat
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings

from audit.chain import AuditChainHead
from audit.checkpoints import (
    CheckpointError,
    checkpoint_files,
    fingerprint,
    public_key_text,
    signing_key,
    trusted_public_key,
    verify_checkpoints,
    write_checkpoint,
)
from audit.models import AuthEventRecord
from audit.sealer import seal_events
from audit.services import auth_event_record
from audit.verify import verify_all
from tests.audit.test_integrity import guards_bypassed

pytestmark = pytest.mark.django_db


def make_events(count: int) -> None:
    for number in range(count):
        auth_event_record(
            event="login", actor=None, target=None, username=f"user{number}", ip=None, user_agent="", detail={}
        )
    seal_events()


def run_verify(*args: str) -> tuple[int, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("verify_audit", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return 1, err.getvalue() + str(exc)
    return 0, out.getvalue() + err.getvalue()


def cut_tail_and_rewind_head(keep: int) -> None:
    """What a database owner can do: delete the newest auth events of chain 0 and point its head back."""
    kept = AuthEventRecord.objects.get(partition=0, seq=keep)
    with guards_bypassed(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_autheventrecord WHERE partition = 0 AND seq > %s", [keep])
    AuditChainHead.objects.filter(stream="auth", partition=0).update(last_seq=keep, last_hash=kept.hash)


@pytest.fixture
def one_chain() -> None:
    # One partition makes "the tail of the chain" a single, predictable set of rows.
    with override_settings(AUDIT_CHAIN_PARTITIONS=1):
        make_events(6)
        yield


def test_checkpoint_file_is_signed_read_only_and_holds_every_head(one_chain: None, tmp_path: Path) -> None:
    written = write_checkpoint(tmp_path)
    assert written.sequence == 1
    assert stat.S_IMODE(os.stat(written.path).st_mode) == 0o444
    envelope = json.loads(written.path.read_text())
    payload = envelope["payload"]
    assert envelope["key"] == fingerprint(signing_key().public_key())
    heads = {(h["stream"], h["partition"]): h["seq"] for h in payload["chains"]}
    assert heads[("auth", 0)] == 6
    assert payload["counts"]["auth"] == 6
    assert payload["previous"] is None
    problems, summary = verify_checkpoints(tmp_path, signing_key().public_key())
    assert problems == []
    assert summary.checkpoints == 1


def test_checkpoints_link_to_the_one_before(one_chain: None, tmp_path: Path) -> None:
    first = write_checkpoint(tmp_path)
    make_events(2)
    second = write_checkpoint(tmp_path)
    assert second.sequence == 2
    assert json.loads(second.path.read_text())["payload"]["previous"] == first.digest
    assert [p.name for p in checkpoint_files(tmp_path)] == [first.path.name, second.path.name]


def test_tail_truncation_with_a_rewritten_head_passes_the_chains_but_not_the_checkpoints(
    one_chain: None, tmp_path: Path
) -> None:
    call_command("audit_checkpoint", "--out", str(tmp_path), stdout=StringIO())
    cut_tail_and_rewind_head(keep=4)
    # The chains alone are consistent again: this is the gap checkpoints close.
    assert verify_all()[0] == []
    assert run_verify()[0] == 0
    code, output = run_verify("--checkpoints", str(tmp_path))
    assert code == 1
    assert (
        "TRUNCATED: auth partition 0 seq 6: checkpoint 1 recorded this event as the chain's head; it is gone" in output
    )
    assert "TRUNCATED: stream auth: 2 rows fewer than checkpoint 1 counted" in output


def test_events_written_after_a_checkpoint_keep_verifying(one_chain: None, tmp_path: Path) -> None:
    call_command("audit_checkpoint", "--out", str(tmp_path), stdout=StringIO())
    make_events(3)
    call_command("audit_checkpoint", "--out", str(tmp_path), stdout=StringIO())
    make_events(1)
    code, output = run_verify("--checkpoints", str(tmp_path))
    assert code == 0, output
    assert "against 2 checkpoint(s)" in output


def test_a_rechained_tail_is_caught_by_the_hash_the_checkpoint_recorded(one_chain: None, tmp_path: Path) -> None:
    """An attacker with the chain key could delete a tail and write new events in its place."""
    write_checkpoint(tmp_path)
    cut_tail_and_rewind_head(keep=4)
    make_events(2)  # seq 5 and 6 again, validly chained, but not the events the checkpoint saw
    assert verify_all()[0] == []
    code, output = run_verify("--checkpoints", str(tmp_path))
    assert code == 1
    assert "ALTERED: auth partition 0 seq 6: its hash differs from the one checkpoint 1 recorded" in output


def test_a_checkpoint_signed_by_another_key_is_refused(one_chain: None, tmp_path: Path) -> None:
    written = write_checkpoint(tmp_path)
    envelope = json.loads(written.path.read_text())
    envelope["payload"]["chains"][0]["seq"] = 999
    os.chmod(written.path, 0o644)
    written.path.write_text(json.dumps(envelope))
    problems, _ = verify_checkpoints(tmp_path, signing_key().public_key())
    assert [p.kind for p in problems] == ["forged"]
    assert "signature does not verify" in str(problems[0])
    # A valid signature under a key the verifier does not trust is no better.
    other = Ed25519PrivateKey.generate()
    code, output = run_verify("--checkpoints", str(tmp_path), f"--public-key={public_key_text(other.public_key())}")
    assert code == 1
    assert "FORGED" in output


def test_a_removed_checkpoint_file_is_missing_from_the_sequence(one_chain: None, tmp_path: Path) -> None:
    for _ in range(3):
        write_checkpoint(tmp_path)
        make_events(1)
    middle = checkpoint_files(tmp_path)[1]
    middle.unlink()
    problems, _ = verify_checkpoints(tmp_path, signing_key().public_key())
    assert [p.kind for p in problems] == ["missing"]
    assert "checkpoints 2 to 2 are gone" in str(problems[0])


def test_verify_names_a_stale_or_absent_checkpoint_as_a_warning(one_chain: None, tmp_path: Path) -> None:
    _, summary = verify_checkpoints(tmp_path, signing_key().public_key())
    assert summary.warnings
    assert "No checkpoint" in summary.warnings[0]
    write_checkpoint(tmp_path, now=datetime.now(UTC) - timedelta(days=3))
    problems, summary = verify_checkpoints(tmp_path, signing_key().public_key())
    assert problems == []
    assert "is the audit_checkpoint timer running" in summary.warnings[0]


def test_checkpoint_refuses_without_a_signing_key_or_directory(one_chain: None, tmp_path: Path) -> None:
    with (
        override_settings(AUDIT_CHECKPOINT_SIGNING_KEY=""),
        pytest.raises(CommandError, match="AUDIT_CHECKPOINT_SIGNING_KEY"),
    ):
        call_command("audit_checkpoint", "--out", str(tmp_path), stdout=StringIO())
    with override_settings(AUDIT_CHECKPOINT_DIR=""), pytest.raises(CommandError, match="--out"):
        call_command("audit_checkpoint", stdout=StringIO())
    with pytest.raises(CommandError, match="does not exist"):
        call_command("audit_checkpoint", "--out", str(tmp_path / "absent"), stdout=StringIO())
    assert checkpoint_files(tmp_path) == []


def test_a_writer_that_lost_the_race_fails_instead_of_overwriting(
    one_chain: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    moment = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    first = write_checkpoint(tmp_path, now=moment)
    original = first.path.read_bytes()
    # Two timers listed the directory before either wrote: both think they make checkpoint 1.
    monkeypatch.setattr("audit.checkpoints._existing", lambda directory: [])
    with pytest.raises(FileExistsError):
        write_checkpoint(tmp_path, now=moment)
    assert first.path.read_bytes() == original


def test_checkpoint_digest_is_sent_to_syslog_without_any_record_data(one_chain: None, tmp_path: Path) -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5)
    try:
        port = receiver.getsockname()[1]
        written = write_checkpoint(tmp_path, syslog_address=f"127.0.0.1:{port}")
        message = receiver.recv(4096).decode()
    finally:
        receiver.close()
    assert f"healthcrypt audit checkpoint sequence=1 sha256={written.digest}" in message
    assert "user0" not in message


def test_a_bad_public_key_is_a_clear_error(one_chain: None, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="--public-key"):
        trusted_public_key("not-a-key")
    code, output = run_verify("--checkpoints", str(tmp_path), "--public-key", "short")
    assert code == 1
    assert "Cannot check the checkpoints" in output


@pytest.mark.django_db(transaction=True)
def test_checkpoint_command_reads_heads_in_one_snapshot_outside_any_transaction(tmp_path: Path) -> None:
    make_events(3)
    out = StringIO()
    call_command("audit_checkpoint", "--out", str(tmp_path), stdout=out)
    assert "Checkpoint 1 written" in out.getvalue()
    payload = json.loads(checkpoint_files(tmp_path)[0].read_text())["payload"]
    assert sum(h["seq"] for h in payload["chains"] if h["stream"] == "auth") == payload["counts"]["auth"] == 3


@pytest.mark.skipif(connection.vendor != "postgresql", reason="direct-change triggers exist on PostgreSQL only")
@pytest.mark.django_db(transaction=True)
def test_checkpoint_seals_pending_direct_changes_and_fixes_their_count(tmp_path: Path) -> None:
    from audit.models import DirectChangeSeal
    from tests.audit.test_postgres_guards import raw_connection
    from tests.factories import PatientFactory

    patient = PatientFactory()
    with raw_connection() as conn:
        conn.execute("UPDATE records_patient SET is_confidential = true WHERE id = %s", [patient.pk])
    call_command("audit_checkpoint", "--out", str(tmp_path), stdout=StringIO())
    payload = json.loads(checkpoint_files(tmp_path)[0].read_text())["payload"]
    sealed = DirectChangeSeal.objects.count()
    assert sealed >= 2  # the factory's insert (marked) and the raw update (not)
    assert payload["counts"]["direct"] == sealed
    assert [h["seq"] for h in payload["chains"] if h["stream"] == "direct"] == [sealed]
