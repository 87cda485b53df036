"""The audit trail cannot be quietly edited: triggers refuse, and the hash chain finds what got past them."""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Callable, Iterator
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.test import Client
from django.urls import reverse

from accounts.models import User
from audit.guards import ensure_maintenance_role
from audit.models import AccessEvent, AuthEventRecord, ChangeEvent, DirectChangeSeal
from audit.sealer import seal_events
from audit.services import auth_event_record, change_event_record
from audit.verify import verify_all
from tests.records.conftest import Ward

pytestmark = pytest.mark.django_db


@contextlib.contextmanager
def guards_bypassed() -> Iterator[None]:
    """What an attacker with the database owner's rights can do: switch the triggers off.

    On PostgreSQL the maintenance switch of the test runner (a test database, a member of the
    maintenance role; the tests log in as a superuser) stands for the owner disabling the triggers.
    """
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            ensure_maintenance_role(cursor)
            cursor.execute("SELECT set_config('healthcrypt.audit_maintenance', 'on', false)")
        else:
            cursor.execute("INSERT INTO audit_guard_bypass (enabled) VALUES (1)")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SELECT set_config('healthcrypt.audit_maintenance', 'off', false)")
            else:
                cursor.execute("DELETE FROM audit_guard_bypass")


def raw(sql: str, params: list[object] | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])


@pytest.fixture
def trail(ward: Ward, physician: User, client_for: Callable[[User], Client]) -> list[AccessEvent]:
    client = client_for(physician)
    for _ in range(12):  # one event per chart view: a chain long enough to cut into
        assert client.get(reverse("records:chart", args=[ward.treated.pk])).status_code == 200
    seal_events()  # what the sealer beside the web workers does within a second
    return list(AccessEvent.objects.order_by("partition", "seq"))


def verify() -> tuple[int, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("verify_audit", stdout=out, stderr=err)
    except CommandError as exc:
        return 1, err.getvalue() + str(exc)
    return 0, out.getvalue()


def test_intact_trail_verifies(trail: list[AccessEvent]) -> None:
    code, output = verify()
    assert code == 0, output
    assert "Audit trail intact" in output
    assert len(trail) > 10
    assert ChangeEvent.objects.exists()  # the fixture's writes are chained too


@pytest.mark.parametrize("table", ["audit_accessevent", "audit_changeevent", "audit_autheventrecord"])
def test_database_refuses_update_and_delete_of_audit_rows(trail: list[AccessEvent], table: str) -> None:
    # Every table holds at least one row, so the row triggers have something to refuse.
    auth_event_record(event="login", actor=None, target=None, username="someone", ip=None, user_agent="", detail={})
    change_event_record(actor=None, patient_id=None, category="demographics", action="create", fields=[])
    with pytest.raises((IntegrityError, DatabaseError)), transaction.atomic():
        raw(f"UPDATE {table} SET user_agent = 'x' WHERE id > 0")  # noqa: S608
    with pytest.raises((IntegrityError, DatabaseError)), transaction.atomic():
        raw(f"DELETE FROM {table}")  # noqa: S608
    assert verify()[0] == 0


def test_orm_update_and_delete_are_refused_too(trail: list[AccessEvent]) -> None:
    with pytest.raises((IntegrityError, DatabaseError)), transaction.atomic():
        AccessEvent.objects.filter(pk=trail[0].pk).update(action="edited")
    with pytest.raises((IntegrityError, DatabaseError)), transaction.atomic():
        AccessEvent.objects.filter(pk=trail[0].pk).delete()


def test_altered_event_is_found_and_named(trail: list[AccessEvent]) -> None:
    victim = trail[4]
    with guards_bypassed():
        raw("UPDATE audit_accessevent SET actor_username = 'someone-else' WHERE id = %s", [victim.pk])
    code, output = verify()
    assert code == 1
    assert f"ALTERED: access partition {victim.partition} seq {victim.seq} (event id {victim.pk})" in output


def test_deleted_event_is_found(trail: list[AccessEvent]) -> None:
    victim = next(
        e for e in trail if e.seq > 1 and any(o.partition == e.partition and o.seq == e.seq + 1 for o in trail)
    )
    with guards_bypassed():
        raw("DELETE FROM audit_accessevent WHERE id = %s", [victim.pk])
    code, output = verify()
    assert code == 1
    assert f"MISSING: access partition {victim.partition} seq {victim.seq}" in output


def test_removed_tail_is_found(trail: list[AccessEvent]) -> None:
    last = max(trail, key=lambda e: (e.partition, e.seq))
    with guards_bypassed():
        raw("DELETE FROM audit_accessevent WHERE id = %s", [last.pk])
    code, output = verify()
    assert code == 1
    assert "TRUNCATED" in output


def test_inserted_forgery_is_found(trail: list[AccessEvent]) -> None:
    template = trail[0]
    forged_seq = max(e.seq for e in trail if e.partition == template.partition) + 1
    AccessEvent.objects.bulk_create(
        [
            AccessEvent(
                at=template.at + datetime.timedelta(seconds=1),
                actor_id=template.actor_id,
                actor_username="forger",
                category="demographics",
                action="view",
                partition=template.partition,
                seq=forged_seq,
                prev_hash="f" * 64,
                hash="0" * 64,
            )
        ]
    )
    code, output = verify()
    assert code == 1
    assert f"access partition {template.partition} seq {forged_seq}" in output


def test_every_event_type_is_chained(trail: list[AccessEvent], client: Client) -> None:
    client.post(reverse("accounts:login"), {"username": "nobody", "password": "x"})
    problems, summary = verify_all()
    assert problems == []
    assert AuthEventRecord.objects.filter(event="login_failed").exists()
    assert summary.events == (
        AccessEvent.objects.count()
        + ChangeEvent.objects.count()
        + AuthEventRecord.objects.count()
        + DirectChangeSeal.objects.count()
    )


def test_a_failing_audit_write_undoes_the_change(ward: Ward, physician: User) -> None:
    from records.models import ClinicalNote
    from records.services import note_write
    from records.signals import patient_data_changed

    def broken(sender: object, **kwargs: object) -> None:
        raise RuntimeError("audit store down")

    patient_data_changed.connect(broken, dispatch_uid="test-broken-change")
    try:
        with pytest.raises(RuntimeError):
            note_write(actor=physician, patient_id=ward.treated.pk, kind="progress", text="Should not stay")
    finally:
        patient_data_changed.disconnect(dispatch_uid="test-broken-change")
    assert not ClinicalNote.objects.exists()
