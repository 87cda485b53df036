"""``seal_audit --loop`` in-process (any database): it seals what committed, survives a failed round
(logged, connection dropped, retried next round) and stops cleanly on SIGTERM after the round."""

from __future__ import annotations

import io
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.db import DatabaseError

from accounts.models import User
from audit.management.commands import seal_audit
from audit.models import AccessEvent
from audit.sealer import SealerRun
from audit.sealing import SealResult
from records.selectors import chart_for
from tests.factories import PatientFactory, assign

pytestmark = pytest.mark.django_db


@pytest.fixture
def restore_signals() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_the_loop_retries_a_failed_round_and_stops_on_sigterm(
    physician: User, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, restore_signals: None
) -> None:
    patient = PatientFactory()
    assign(physician, patient)
    monkeypatch.setattr("django.conf.settings.AUDIT_SEAL_ON_COMMIT", False, raising=False)
    chart_for(actor=physician, patient_id=patient.pk)
    assert AccessEvent.objects.filter(seq__isnull=True).exists()  # waiting for the sealer
    real = seal_audit.seal_events
    rounds: list[str] = []

    def flaky(**kwargs: Any) -> Any:
        if not rounds:
            rounds.append("failed")
            raise DatabaseError("connection lost")
        rounds.append("sealed")
        return real(**kwargs)

    def sleep(seconds: float) -> None:
        assert seconds == 0.25
        if len(rounds) == 2:  # after the retry sealed: the operator stops the service
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)  # type: ignore[operator]

    closed: list[bool] = []
    monkeypatch.setattr(seal_audit, "seal_events", flaky)
    # The loop drops the connections after a failed round; here that would end the test's transaction.
    monkeypatch.setattr(seal_audit.connections, "close_all", lambda: closed.append(True))
    monkeypatch.setattr(seal_audit.time, "sleep", sleep)
    out = io.StringIO()
    call_command("seal_audit", "--loop", "--interval", "0.25", stdout=out)

    assert rounds == ["failed", "sealed"]
    assert closed == [True]
    assert "every 0.25 s" in out.getvalue()
    assert "audit sealing round failed; retrying" in caplog.text
    assert not AccessEvent.objects.filter(seq__isnull=True).exists()


def test_the_loop_seals_every_round_and_judges_every_judge_interval(
    monkeypatch: pytest.MonkeyPatch, restore_signals: None
) -> None:
    """Judging reads facts per batch: the loop does it every ANOMALY_RULES_JUDGE_INTERVAL seconds (and on
    its first round), sealing every round in between; direct changes are looked for among the recent ids
    every round and over the whole table every AUDIT_SEAL_FULL_INTERVAL seconds (and first)."""
    monkeypatch.setattr("django.conf.settings.ANOMALY_RULES_JUDGE_INTERVAL", 2.0, raising=False)
    monkeypatch.setattr("django.conf.settings.AUDIT_SEAL_FULL_INTERVAL", 3.0, raising=False)
    clock = [100.0]
    judged: list[bool] = []
    recent: list[bool] = []

    def seal_direct(**kwargs: Any) -> SealResult:
        recent.append(kwargs["recent"])
        return SealResult()

    def seal(**kwargs: Any) -> Any:
        judged.append(kwargs["judge"])
        return SealerRun()

    def sleep(seconds: float) -> None:
        clock[0] += seconds
        if len(judged) == 9:
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)  # type: ignore[operator]

    monkeypatch.setattr(seal_audit, "seal_events", seal)
    monkeypatch.setattr(seal_audit, "seal_direct_changes", seal_direct)
    monkeypatch.setattr(seal_audit.time, "sleep", sleep)
    monkeypatch.setattr(seal_audit.time, "monotonic", lambda: clock[0])
    out = io.StringIO()
    call_command("seal_audit", "--loop", "--interval", "0.5", stdout=out)

    # Rounds at 100.0, 100.5 ... 104.0: judged at 100, 102 and 104.
    assert judged == [True, False, False, False, True, False, False, False, True]
    # The whole direct-change table at 100 and 103, the recent ids in between.
    assert recent == [False, True, True, True, True, True, False, True, True]
    assert "judging accesses every 2 s" in out.getvalue()
