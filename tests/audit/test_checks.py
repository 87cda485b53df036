"""The security check that refuses to start when an audit receiver is missing (audit/checks.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.dispatch import Signal
from django.test import override_settings

from accounts.signals import auth_event
from audit import receivers
from audit.checks import AUDIT_MIDDLEWARE, check_alert_link, check_audit_receivers
from records.signals import (
    break_glass_granted,
    disclosure_made,
    patient_data_accessed,
    patient_data_changed,
    patient_rows_changed,
)


def test_the_configured_project_passes() -> None:
    assert check_audit_receivers() == []


@pytest.mark.parametrize(
    ("name", "signal", "uid", "receiver"),
    [
        ("patient_data_accessed", patient_data_accessed, "audit.accessed", receivers.on_patient_data_accessed),
        ("patient_data_changed", patient_data_changed, "audit.changed", receivers.on_patient_data_changed),
        ("patient_rows_changed", patient_rows_changed, "audit.rows_changed", receivers.on_patient_rows_changed),
        ("disclosure_made", disclosure_made, "audit.disclosure", receivers.on_disclosure_made),
        ("auth_event", auth_event, "audit.auth", receivers.on_auth_event),
        # Its receiver raises the grant's alert for review: no receiver, no review.
        ("break_glass_granted", break_glass_granted, "audit.break_glass_granted", receivers.on_break_glass_granted),
    ],
)
def test_a_signal_without_its_audit_receiver_is_refused(
    name: str, signal: Signal, uid: str, receiver: Callable[..., Any]
) -> None:
    assert signal.disconnect(dispatch_uid=uid)
    try:
        messages = check_audit_receivers()
    finally:
        signal.connect(receiver, dispatch_uid=uid)
    assert [(m.id, m.msg) for m in messages] == [("healthcrypt.E010", f"No audit receiver is connected to {name}.")]
    assert check_audit_receivers() == []


def test_the_audit_context_middleware_is_required(settings: Any) -> None:
    with override_settings(MIDDLEWARE=[m for m in settings.MIDDLEWARE if m != AUDIT_MIDDLEWARE]):
        assert [m.id for m in check_audit_receivers()] == ["healthcrypt.E011"]


@override_settings(DEBUG=False, TESTING=False, SITE_URL="")
def test_alert_links_without_a_site_url_are_warned_about() -> None:
    messages = check_alert_link()
    assert [m.id for m in messages] == ["healthcrypt.W014"]
    assert not messages[0].is_serious()  # a warning: the server still starts
    with override_settings(SITE_URL="https://ehr.hospital.example"):
        assert check_alert_link() == []
