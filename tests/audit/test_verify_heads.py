"""What ``verify_audit`` says when the chain heads, the sealed direct changes or the guards are tampered with
(the events themselves: test_integrity.py), and that the tools which could erase the trail refuse to."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings

from audit.chain import AuditChainHead
from audit.models import AuthEventRecord, DirectChange, DirectChangeSeal
from audit.sealer import seal_events
from audit.sealing import seal_direct_changes
from audit.services import auth_event_record
from audit.verify import verify_all
from tests.audit.test_integrity import guards_bypassed
from tests.audit.test_sealing import direct_change

pytestmark = pytest.mark.django_db


def _auth_events(count: int) -> AuditChainHead:
    """``count`` sign-in events on one chain; its head."""
    with override_settings(AUDIT_CHAIN_PARTITIONS=1):
        for number in range(count):
            auth_event_record(
                event="login", actor=None, target=None, username=f"user{number}", ip=None, user_agent="", detail={}
            )
    seal_events()
    return AuditChainHead.objects.get(stream="auth", partition=0)


def test_deleted_chain_head_leaves_events_reported_as_inserted() -> None:
    head = _auth_events(3)
    AuditChainHead.objects.filter(pk=head.pk).delete()
    problems, _ = verify_all()
    assert [str(problem) for problem in problems] == [
        "INSERTED: auth partition 0 seq 3: events exist for a chain with no head"
    ]


def test_head_moved_back_is_reported_as_a_chain_past_its_head() -> None:
    head = _auth_events(3)
    AuditChainHead.objects.filter(pk=head.pk).update(last_seq=2)
    problems, _ = verify_all()
    assert [str(problem) for problem in problems] == [
        "INSERTED: auth partition 0 seq 3: the chain goes past its recorded head"
    ]


def test_an_empty_chain_with_no_head_is_fine() -> None:
    problems, summary = verify_all()
    assert problems == []
    assert summary.events == 0
    assert not AuthEventRecord.objects.exists()


def test_many_deleted_direct_changes_are_listed_up_to_the_cap_then_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    # A small cap and a small batch stand for 100 and 5,000: the same code paths, fewer rows.
    monkeypatch.setattr("audit.verify.MAX_DIRECT_PROBLEMS", 2)
    monkeypatch.setattr("audit.verify.FETCH", 2)
    changes = [direct_change(row_id=number) for number in range(5)]
    seal_direct_changes()
    with guards_bypassed():
        DirectChange.objects.filter(pk__in=[change.pk for change in changes[1:]]).delete()
    problems, _ = verify_all()
    seals = dict(DirectChangeSeal.objects.values_list("direct_change_id", "pk"))
    assert [str(problem) for problem in problems] == [
        f"DELETED: direct partition 0 seq 2 (event id {seals[changes[1].pk]}):"
        f" direct change #{changes[1].pk} was deleted after it was sealed",
        f"DELETED: direct partition 0 seq 3 (event id {seals[changes[2].pk]}):"
        f" direct change #{changes[2].pk} was deleted after it was sealed",
        "DELETED: direct partition 0: and 2 more direct changes",
    ]


@pytest.mark.skipif(connection.vendor != "sqlite", reason="PostgreSQL's guards: test_postgres_guards.py")
def test_verify_audit_names_a_dropped_guard() -> None:
    # SQLite's DDL is transactional: the test's rollback puts the trigger back.
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER audit_accessevent_no_update")
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError):
        call_command("verify_audit", stdout=out, stderr=err)
    assert "GUARD: guard trigger audit_accessevent_no_update on audit_accessevent is missing" in err.getvalue()


@override_settings(DEBUG=False, TESTING=False)
def test_flush_is_refused_outside_debug_and_tests() -> None:
    _auth_events(1)
    with pytest.raises(CommandError, match="erase the audit trail"):
        call_command("flush", interactive=False, verbosity=0)
    assert AuthEventRecord.objects.count() == 1
