"""seed_demo's audit history (audit/demo.py): weeks of events, suspicious reads, a past grant, alerts; once."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db.models.functions import TruncDay

from audit.models import AccessEvent, Alert, AuthEventRecord, ChangeEvent
from audit.verify import verify_all
from records.models import BreakGlassGrant

pytestmark = pytest.mark.django_db


def test_history_is_spread_over_weeks_verifies_and_is_written_once() -> None:
    out = StringIO()
    call_command("seed_demo", "--force", "--patients", "24", stdout=out)
    assert "Demo history:" in out.getvalue()
    demo = AccessEvent.objects.filter(session_ref="demo-history")
    days = demo.annotate(day=TruncDay("at")).values("day").distinct().count()
    assert days >= 14
    assert demo.filter(explanation="").exists()  # suspicious reads
    assert demo.filter(explanation="break_glass", actor_username="ems").exists()
    grant = BreakGlassGrant.objects.get(user__username="ems")
    assert grant.ended_at is not None
    assert AuthEventRecord.objects.filter(event="lockout").count() == 1
    assert AuthEventRecord.objects.filter(event="login_failed").count() >= 5
    statuses = set(Alert.objects.values_list("status", flat=True))
    assert {"open", "acknowledged", "closed_justified", "closed_violation"} <= statuses
    assert ChangeEvent.objects.filter(category="alert").exists()
    problems, _ = verify_all(seal=False)
    assert problems == []

    counts = (demo.count(), Alert.objects.count(), BreakGlassGrant.objects.count(), ChangeEvent.objects.count())
    again = StringIO()
    call_command("seed_demo", "--force", "--patients", "24", stdout=again)
    assert "already present" in again.getvalue()
    assert (demo.count(), Alert.objects.count(), BreakGlassGrant.objects.count(), ChangeEvent.objects.count()) == counts


def test_the_sealer_does_not_judge_the_history_again() -> None:
    """The history is judged by seed_demo's own scan; with the rules at the sealer, the sealer starts
    after it (audit/detection/nearline.py) instead of working through weeks of events again."""
    from audit.detection import nearline

    call_command("seed_demo", "--force", "--patients", "24", stdout=StringIO())
    assert not nearline.unjudged().filter(session_ref="demo-history").exists()


def test_history_needs_the_demo_users() -> None:
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="Run seed_demo first"):
        call_command("seed_demo_history", "--force", stdout=StringIO())


def test_a_failing_rules_scan_still_leaves_the_demo_with_verifiable_alerts(monkeypatch: pytest.MonkeyPatch) -> None:
    def scan_fails(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the rules engine is broken")

    monkeypatch.setattr("audit.demo.call_command", scan_fails)
    out = StringIO()
    call_command("seed_demo", "--force", "--patients", "24", stdout=out)
    assert "alerts (made directly)" in out.getvalue()
    assert {"unexplained_view", "break_glass"} <= set(Alert.objects.values_list("rule", flat=True))
    assert all(alert.subjects.exists() for alert in Alert.objects.all())
    problems, _ = verify_all(seal=False)
    assert problems == []


def test_history_refuses_to_run_with_debug_off_unless_forced() -> None:
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="DEBUG off"):
        call_command("seed_demo_history", stdout=StringIO())
    assert not AccessEvent.objects.filter(session_ref="demo-history").exists()
