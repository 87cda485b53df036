"""Checkpoint files tampered with by someone who can write the directory, or even sign (an insider with
the signing key): each is reported, and bad settings are refused with a clear error."""

from __future__ import annotations

import json
import os
from base64 import urlsafe_b64encode
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from audit.checkpoints import (
    CheckpointError,
    canonical,
    checkpoint_files,
    public_key_text,
    signing_key,
    trusted_public_key,
    verify_checkpoints,
    write_checkpoint,
)
from tests.audit.test_checkpoints import make_events

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _one_chain() -> None:
    make_events(3)


def rewrite(path: Path, change: Any) -> None:
    """Change a checkpoint's payload with ``change`` and sign it again with the real signing key."""
    envelope = json.loads(path.read_text())
    change(envelope["payload"])
    envelope["signature"] = urlsafe_b64encode(signing_key().sign(canonical(envelope["payload"]))).decode("ascii")
    os.chmod(path, 0o644)
    path.write_text(json.dumps(envelope, sort_keys=True, indent=1) + "\n")


def problems_in(directory: Path) -> list[str]:
    problems, _ = verify_checkpoints(directory, signing_key().public_key())
    return [str(problem) for problem in problems]


def test_a_file_that_is_no_checkpoint_is_reported_as_forged(tmp_path: Path) -> None:
    written = write_checkpoint(tmp_path)
    os.chmod(written.path, 0o644)
    written.path.write_text("not json at all")
    found = problems_in(tmp_path)
    assert len(found) == 1
    assert "cannot be read as a checkpoint (JSONDecodeError)" in found[0]
    assert found[0].startswith("FORGED")


def test_a_signed_checkpoint_of_an_unknown_format_is_refused(tmp_path: Path) -> None:
    written = write_checkpoint(tmp_path)
    rewrite(written.path, lambda payload: payload.update(format="something-else/9"))
    found = problems_in(tmp_path)
    assert len(found) == 1
    assert "unknown checkpoint format" in found[0]


def test_a_signed_checkpoint_renumbered_inside_is_reported(tmp_path: Path) -> None:
    written = write_checkpoint(tmp_path)
    rewrite(written.path, lambda payload: payload.update(sequence=7))
    found = problems_in(tmp_path)
    assert len(found) == 1
    assert "the sequence inside differs from the file name" in found[0]


def test_a_replaced_earlier_checkpoint_is_caught_by_the_next_ones_link(tmp_path: Path) -> None:
    first = write_checkpoint(tmp_path)
    make_events(1)
    write_checkpoint(tmp_path)
    # Replaced by a validly signed file (an insider): only the link from checkpoint 2 gives it away.
    rewrite(first.path, lambda payload: payload.update(created_at="2026-01-01T00:00:00+00:00"))
    found = problems_in(tmp_path)
    assert len(found) == 1
    assert "MISSING" in found[0]
    assert "the previous checkpoint file was replaced" in found[0]
    assert len(list(checkpoint_files(tmp_path))) == 2


def test_a_missing_checkpoint_directory_is_an_error_not_a_pass(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        verify_checkpoints(tmp_path / "absent", signing_key().public_key())


def test_a_syslog_address_that_is_neither_a_socket_nor_host_and_port_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="socket path or host:port"):
        write_checkpoint(tmp_path, syslog_address="loghost")


def test_a_signing_key_that_is_not_a_key_is_a_clear_error() -> None:
    with override_settings(AUDIT_CHECKPOINT_SIGNING_KEY="not-base64-key"), pytest.raises(CheckpointError):
        signing_key()


def test_the_trusted_public_key_can_be_read_from_a_file(tmp_path: Path) -> None:
    key_file = tmp_path / "checkpoint.pub"
    key_file.write_text(public_key_text(signing_key().public_key()) + "\n")
    key, source = trusted_public_key(str(key_file))
    assert source == "--public-key"
    assert public_key_text(key) == public_key_text(signing_key().public_key())
    with override_settings(AUDIT_CHECKPOINT_PUBLIC_KEY=str(key_file)):
        assert trusted_public_key()[1] == "AUDIT_CHECKPOINT_PUBLIC_KEY"
