"""The archival command copies events out with their chain links and never deletes anything."""

from __future__ import annotations

import hashlib
import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

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


def _login(username: str) -> None:
    auth_event_record(
        event="login", actor=None, target=None, username=username, ip="10.0.0.1", user_agent="ua", detail={}
    )


def test_archive_of_one_month_has_that_months_events_in_chain_order(tmp_path: Path, time_machine: object) -> None:
    import datetime

    from audit.sealer import seal_events

    for day, name in (
        (datetime.datetime(2026, 10, 31, 23, 59, tzinfo=datetime.UTC), "october"),
        (datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC), "first"),
        (datetime.datetime(2026, 11, 30, 23, 59, tzinfo=datetime.UTC), "last"),
        (datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC), "december"),
    ):
        time_machine.move_to(day)  # type: ignore[attr-defined]
        _login(name)
    seal_events()
    time_machine.move_to(datetime.datetime(2026, 12, 5, tzinfo=datetime.UTC))  # type: ignore[attr-defined]
    out = tmp_path / "2026-11.jsonl"
    call_command("archive_audit", "--month", "2026-11", "--out", str(out), stdout=StringIO())
    lines = out.read_text().splitlines()
    events, summary = [json.loads(line) for line in lines[:-1]], json.loads(lines[-1])
    assert [e["username"] for e in events] == ["first", "last"]
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert all(e["hash"] and e["prev_hash"] for e in events)
    assert summary["month"] == "2026-11"
    assert summary["streams"]["auth"]["events"] == 2
    assert summary["streams"]["access"]["events"] == 0

    assert (
        summary["streams"]["auth"]["sha256"]
        == hashlib.sha256("".join(f"{line}\n" for line in lines[:-1]).encode()).hexdigest()
    )
    assert AuthEventRecord.objects.count() == 4  # nothing deleted


def test_archive_of_a_month_refuses_an_open_month_unsealed_events_and_bad_input(
    tmp_path: Path, time_machine: object
) -> None:
    import datetime

    time_machine.move_to(datetime.datetime(2026, 11, 20, tzinfo=datetime.UTC))  # type: ignore[attr-defined]
    with pytest.raises(CommandError, match="month that is over"):
        call_command("archive_audit", "--month", "2026-11", "--out", str(tmp_path / "a"), stdout=StringIO())
    with pytest.raises(CommandError, match="month like"):
        call_command("archive_audit", "--month", "November", "--out", str(tmp_path / "a"), stdout=StringIO())
    existing = tmp_path / "exists"
    existing.write_text("keep")
    with pytest.raises(CommandError, match="never overwritten"):
        call_command("archive_audit", "--month", "2026-10", "--out", str(existing), stdout=StringIO())
    with override_settings(AUDIT_SEAL_ON_COMMIT=False):
        _login("unsealed")
    time_machine.move_to(datetime.datetime(2026, 12, 2, tzinfo=datetime.UTC))  # type: ignore[attr-defined]
    with pytest.raises(CommandError, match="not sealed yet"):
        call_command("archive_audit", "--month", "2026-11", "--out", str(tmp_path / "b"), stdout=StringIO())
    assert not (tmp_path / "a").exists()
    assert not (tmp_path / "b").exists()
