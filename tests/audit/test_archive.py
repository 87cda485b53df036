"""The archival command copies events out with their chain links and never deletes anything."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuthEventRecord
from audit.services import auth_event_record

pytestmark = pytest.mark.django_db


def test_archive_refuses_a_future_cut_off(tmp_path: Path) -> None:
    auth_event_record(event="login", actor=None, target=None, username="a", ip="10.0.0.1", user_agent="ua", detail={})
    with pytest.raises(CommandError, match="cannot be in the future"):
        call_command("archive_audit", "--before", "2999-01-01", "--out", str(tmp_path / "a.jsonl"), stdout=StringIO())
    assert not (tmp_path / "a.jsonl").exists()


def test_archive_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="date like"):
        call_command("archive_audit", "--before", "yesterday", "--out", str(tmp_path / "x"), stdout=StringIO())
    existing = tmp_path / "exists.jsonl"
    existing.write_text("keep me")
    with pytest.raises(CommandError, match="never overwritten"):
        call_command("archive_audit", "--before", "2020-01-01", "--out", str(existing), stdout=StringIO())
    assert existing.read_text() == "keep me"


def test_archive_lines_carry_every_column(tmp_path: Path, time_machine: object) -> None:
    import datetime

    time_machine.move_to(datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))  # type: ignore[attr-defined]
    auth_event_record(event="login", actor=None, target=None, username="old", ip="10.0.0.1", user_agent="ua", detail={})
    time_machine.move_to(datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC))  # type: ignore[attr-defined]
    auth_event_record(event="login", actor=None, target=None, username="new", ip="10.0.0.1", user_agent="ua", detail={})
    out = tmp_path / "archive.jsonl"
    call_command("archive_audit", "--before", "2026-03-01", "--out", str(out), stdout=StringIO())
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    events, heads = lines[:-1], lines[-1]
    assert [e["username"] for e in events] == ["old"]
    assert {"partition", "seq", "prev_hash", "hash", "stream"} <= set(events[0])
    assert heads["retention_years"] >= 10
    assert AuthEventRecord.objects.count() == 2  # nothing deleted
