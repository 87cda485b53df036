"""The alert workflow services (audit/alert_workflow.py): transitions, permissions and their audit rows."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection

from accounts.models import User
from accounts.roles import Role
from audit.alert_workflow import (
    AlertTransitionError,
    alert_acknowledge,
    alert_assign,
    alert_bulk_acknowledge,
    alert_close,
    alert_note,
)
from audit.models import Alert, ChangeEvent
from tests.audit.alert_helpers import make_alert

pytestmark = pytest.mark.django_db


def alert_events(alert: Alert) -> list[ChangeEvent]:
    return list(ChangeEvent.objects.filter(category="alert", object_type="Alert", object_id=alert.pk).order_by("id"))


def test_acknowledge_moves_open_to_acknowledged_and_audits_it(security: User) -> None:
    alert = make_alert()
    alert_acknowledge(actor=security, alert_id=alert.pk)
    alert.refresh_from_db()
    assert alert.status == Alert.Status.ACKNOWLEDGED
    (event,) = alert_events(alert)
    assert (event.actor_id, event.actor_role, event.action, event.fields) == (
        security.pk,
        "security",
        "acknowledge",
        ["status"],
    )
    assert event.patient_id is None


def test_acknowledging_twice_is_refused_without_a_second_event(security: User) -> None:
    alert = make_alert()
    alert_acknowledge(actor=security, alert_id=alert.pk)
    with pytest.raises(AlertTransitionError):
        alert_acknowledge(actor=security, alert_id=alert.pk)
    assert len(alert_events(alert)) == 1


@pytest.mark.parametrize(
    ("resolution", "status"), [("justified", "closed_justified"), ("violation", "closed_violation")]
)
def test_close_records_resolution_and_audits_without_the_text(security: User, resolution: str, status: str) -> None:
    alert = make_alert()
    alert_close(actor=security, alert_id=alert.pk, resolution=resolution, note="Covering colleague on the ward")
    alert.refresh_from_db()
    assert alert.status == status
    assert alert.resolution == "Covering colleague on the ward"
    assert alert.closed_at is not None
    assert alert.assignee == security  # the closer owns an unassigned alert
    (event,) = alert_events(alert)
    assert event.action == f"close_{resolution}"
    assert event.fields == ["assignee", "closed_at", "resolution", "status"]
    # The note is encrypted at rest and absent from the audit trail.
    with connection.cursor() as cursor:
        cursor.execute("SELECT resolution FROM audit_alert WHERE id = %s", [alert.pk])
        assert "Covering" not in cursor.fetchone()[0]
    assert "Covering" not in str(ChangeEvent.objects.filter(pk=event.pk).values().get())


def test_close_needs_a_note_and_a_known_resolution(security: User) -> None:
    alert = make_alert()
    with pytest.raises(ValidationError):
        alert_close(actor=security, alert_id=alert.pk, resolution="justified", note="   ")
    with pytest.raises(ValidationError):
        alert_close(actor=security, alert_id=alert.pk, resolution="shrug", note="why")
    alert.refresh_from_db()
    assert alert.status == Alert.Status.OPEN
    assert alert_events(alert) == []


def test_closed_alert_cannot_be_closed_acknowledged_or_reassigned(security: User) -> None:
    alert = make_alert()
    alert_close(actor=security, alert_id=alert.pk, resolution="violation", note="Confirmed snooping")
    with pytest.raises(AlertTransitionError):
        alert_close(actor=security, alert_id=alert.pk, resolution="justified", note="again")
    with pytest.raises(AlertTransitionError):
        alert_acknowledge(actor=security, alert_id=alert.pk)
    with pytest.raises(AlertTransitionError):
        alert_assign(actor=security, alert_id=alert.pk, assignee=None)
    assert len(alert_events(alert)) == 1


def test_acknowledged_alert_can_be_closed(security: User) -> None:
    alert = make_alert()
    alert_acknowledge(actor=security, alert_id=alert.pk)
    alert_close(actor=security, alert_id=alert.pk, resolution="justified", note="Consult")
    assert [e.action for e in alert_events(alert)] == ["acknowledge", "close_justified"]


def test_assign_only_to_the_security_team(security: User, make_persona, nurse: User) -> None:
    colleague = make_persona(Role.SECURITY, username="security2")
    alert = make_alert()
    alert_assign(actor=security, alert_id=alert.pk, assignee=colleague)
    alert.refresh_from_db()
    assert alert.assignee == colleague
    with pytest.raises(ValidationError):
        alert_assign(actor=security, alert_id=alert.pk, assignee=nurse)
    # Assigning to the same person again changes nothing and records nothing.
    alert_assign(actor=security, alert_id=alert.pk, assignee=colleague)
    assert [(e.action, e.fields) for e in alert_events(alert)] == [("assign", ["assignee"])]


def test_notes_are_appended_stamped_and_audited_by_name_only(security: User) -> None:
    alert = make_alert()
    alert_note(actor=security, alert_id=alert.pk, note="Called the ward manager")
    alert_note(actor=security, alert_id=alert.pk, note="Rota confirms the shift")
    alert.refresh_from_db()
    lines = alert.notes.splitlines()
    assert len(lines) == 2
    assert "security] Called the ward manager" in lines[0]
    events = alert_events(alert)
    assert [(e.action, e.fields) for e in events] == [("note", ["notes"]), ("note", ["notes"])]
    with pytest.raises(ValidationError):
        alert_note(actor=security, alert_id=alert.pk, note="")


def test_bulk_acknowledge_touches_only_open_alerts(security: User) -> None:
    open_one, open_two = make_alert(), make_alert()
    closed = make_alert(status=Alert.Status.CLOSED_JUSTIFIED)
    assert alert_bulk_acknowledge(actor=security, alert_ids=[open_one.pk, open_two.pk, closed.pk]) == 2
    assert set(Alert.objects.values_list("status", flat=True)) == {"acknowledged", "closed_justified"}
    assert ChangeEvent.objects.filter(category="alert", action="acknowledge").count() == 2
    assert alert_events(closed) == []


def test_bulk_acknowledge_is_bounded(security: User) -> None:
    with pytest.raises(ValidationError):
        alert_bulk_acknowledge(actor=security, alert_ids=range(1, 500))


@pytest.mark.parametrize("role", [r for r in Role if r != Role.SECURITY])
def test_every_other_role_is_refused(role: Role, make_persona) -> None:
    actor = make_persona(role)
    alert = make_alert()
    for call in (
        lambda: alert_acknowledge(actor=actor, alert_id=alert.pk),
        lambda: alert_note(actor=actor, alert_id=alert.pk, note="x"),
        lambda: alert_close(actor=actor, alert_id=alert.pk, resolution="justified", note="x"),
        lambda: alert_assign(actor=actor, alert_id=alert.pk, assignee=None),
        lambda: alert_bulk_acknowledge(actor=actor, alert_ids=[alert.pk]),
    ):
        with pytest.raises(PermissionDenied):
            call()
    alert.refresh_from_db()
    assert alert.status == Alert.Status.OPEN
    assert alert_events(alert) == []


def test_missing_alert_raises_does_not_exist(security: User) -> None:
    with pytest.raises(Alert.DoesNotExist):
        alert_acknowledge(actor=security, alert_id=987654)


def test_failed_audit_write_rolls_back_the_change(security: User, monkeypatch: pytest.MonkeyPatch) -> None:
    from audit import alert_workflow

    def broken(**kwargs: object) -> None:
        raise RuntimeError("audit store down")

    monkeypatch.setattr(alert_workflow, "change_event_record", broken)
    alert = make_alert()
    with pytest.raises(RuntimeError):
        alert_acknowledge(actor=security, alert_id=alert.pk)
    alert.refresh_from_db()
    assert alert.status == Alert.Status.OPEN
