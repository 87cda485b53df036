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

    def flaky() -> Any:
        if not rounds:
            rounds.append("failed")
            raise DatabaseError("connection lost")
        rounds.append("sealed")
        return real()

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
