"""partner_probing: one partner's refused or empty API calls (guessed MRNs, a stale or forged token,
scopes not granted) reaching twenty in a 15-minute bucket raise one high alert, inline and in the
bulk scan alike; fewer, or the same number spread over partners, raise none."""

from __future__ import annotations

import datetime

import pytest
import time_machine
from django.test import override_settings

from accounts.signals import AuthEvent, auth_event
from audit import rules
from audit.detection import scan
from audit.models import Alert

pytestmark = pytest.mark.django_db

AT = datetime.datetime(2026, 12, 3, 10, 1, tzinfo=datetime.UTC)


def _refused(partner: str, n: int, reason: str = "no_match") -> None:
    for _ in range(n):
        auth_event.send(
            sender=None,
            event=AuthEvent.PARTNER_API_REFUSED,
            username=partner,
            ip="10.0.0.7",
            detail={"error": "200", "reason": reason},
        )


@pytest.mark.parametrize(
    ("calls", "alerts"), [(rules.PARTNER_PROBING_COUNT - 1, 0), (rules.PARTNER_PROBING_COUNT + 5, 1)]
)
def test_one_partners_refused_calls_in_a_bucket_raise_one_alert(calls: int, alerts: int) -> None:
    with time_machine.travel(AT, tick=True):
        _refused("partner:northside", calls)
    found = Alert.objects.filter(rule="partner_probing")
    assert found.count() == alerts
    if alerts:
        assert found.get().severity == Alert.Severity.HIGH
        assert "partner" in found.get().reason


def test_the_same_number_spread_over_partners_raises_nothing() -> None:
    half = rules.PARTNER_PROBING_COUNT // 2 + 1
    with time_machine.travel(AT, tick=True):
        _refused("partner:northside", half)
        _refused("partner:eastside", half, reason="scope")
    assert not Alert.objects.filter(rule="partner_probing").exists()


def test_calls_with_forged_tokens_count_together_as_the_unknown_partner() -> None:
    with time_machine.travel(AT, tick=True):
        _refused("partner:unknown", rules.PARTNER_PROBING_COUNT, reason="unknown_token")
    assert Alert.objects.filter(rule="partner_probing").count() == 1


def test_the_bulk_scan_finds_what_inline_detection_would_have(settings: object) -> None:
    with override_settings(ANOMALY_RULES_INLINE=False), time_machine.travel(AT, tick=True):
        _refused("partner:northside", rules.PARTNER_PROBING_COUNT + 3)
    assert not Alert.objects.filter(rule="partner_probing").exists()
    outcome = scan(
        since=AT - datetime.timedelta(hours=1), until=AT + datetime.timedelta(hours=1), only="partner_probing"
    )
    assert outcome.findings["partner_probing"] == 1
    assert Alert.objects.filter(rule="partner_probing").count() == 1
    # Idempotent: a second scan raises nothing new.
    scan(since=AT - datetime.timedelta(hours=1), until=AT + datetime.timedelta(hours=1), only="partner_probing")
    assert Alert.objects.filter(rule="partner_probing").count() == 1
