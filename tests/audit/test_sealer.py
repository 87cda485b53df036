"""Sealing off the request path (audit/chain.py, audit/sealer.py): a request only inserts its events with
their macs; the sealer links them into the chain. Attacks on the gap between the two: a copied event, a
forged unsealed row, an edit of an unsealed row, a sealer that crashes half-way or is not running."""

from __future__ import annotations

import contextlib
import datetime
import json
import threading
from collections.abc import Callable
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Max
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from audit import sealer
from audit.chain import GENESIS, AuditChainHead, link_hash_v1, stamp
from audit.checkpoints import write_checkpoint
from audit.models import AccessEvent, Alert, AlertSubject, AuthEventRecord, ChangeEvent, RuleFailure
from audit.sealer import seal_events
from audit.services import access_event_record, auth_event_record, change_event_record
from audit.verify import unsealed_problems, verify_all
from tests.audit.test_integrity import guards_bypassed, raw
from tests.records.conftest import Ward

pytestmark = pytest.mark.django_db


def _login_event(username: str = "someone") -> AuthEventRecord:
    return auth_event_record(
        event="login", actor=None, target=None, username=username, ip=None, user_agent="", detail={}
    )


def test_a_chart_view_inserts_its_events_unsealed_and_touches_no_chain_head(
    ward: Ward, physician: User, client_for: Callable[[User], Client]
) -> None:
    client = client_for(physician)
    with CaptureQueriesContext(connection) as queries:
        assert client.get(reverse("records:chart", args=[ward.treated.pk])).status_code == 200
    assert not [q["sql"] for q in queries.captured_queries if "audit_auditchainhead" in q["sql"]]
    events = list(AccessEvent.objects.all())
    assert events
    assert all(e.mac and e.nonce and not e.hash and e.seq is None for e in events)
    assert seal_events().sealed["access"] == len(events)
    assert all(e.hash and e.seq for e in AccessEvent.objects.all())
    assert verify_all()[0] == []


def test_sealing_numbers_the_chain_without_gaps_in_insert_order_and_moves_the_head() -> None:
    for n in range(5):
        _login_event(f"user{n}")
    seal_events(batch=2)  # three batches: 2, 2, 1
    rows = list(AuthEventRecord.objects.order_by("seq").values_list("id", "seq", "prev_hash", "hash"))
    assert [seq for _, seq, _, _ in rows] == [1, 2, 3, 4, 5]
    assert [pk for pk, *_ in rows] == sorted(pk for pk, *_ in rows)
    assert rows[0][2] == GENESIS
    assert all(rows[i][2] == rows[i - 1][3] for i in range(1, 5))
    head = AuditChainHead.objects.get(stream="auth")
    assert (head.last_seq, head.last_hash) == (5, rows[-1][3])
    assert seal_events().total == 0  # idempotent


def test_a_copy_of_a_genuine_event_is_refused_by_its_mac() -> None:
    """A vendor with the application's login copies a real event (to frame someone twice, say)."""
    event = _login_event()
    with pytest.raises(IntegrityError), transaction.atomic():
        raw(
            "INSERT INTO audit_autheventrecord (at, event, actor_id, target_id, username, ip, user_agent, detail,"
            " nonce, mac, partition, seq, prev_hash, hash)"
            " SELECT at, event, actor_id, target_id, username, ip, user_agent, detail, nonce, mac, NULL, NULL, '', ''"
            " FROM audit_autheventrecord WHERE id = %s",
            [event.pk],
        )


def test_a_forged_unsealed_event_is_sealed_and_then_named_by_verify() -> None:
    """An INSERT without the key: the sealer chains it (so it cannot be quietly removed), verify names it."""
    _login_event()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_autheventrecord (at, event, actor_id, target_id, username, ip, user_agent, detail,"
            " nonce, mac, partition, seq, prev_hash, hash)"
            " VALUES (%s, 'login', NULL, NULL, 'forger', NULL, '', '{}', 'n', %s, NULL, NULL, '', '')",
            [timezone.now(), "a" * 64],
        )
    seal_events()
    problems, _ = verify_all()
    forged = AuthEventRecord.objects.get(username="forger")
    assert [str(p) for p in problems] == [
        f"ALTERED: auth partition 0 seq {forged.seq} (event id {forged.pk}): its content does not match its HMAC"
    ]


def _forge(table_sql: str, params: list[object]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(table_sql, params)


FORGED_CHANGE = (
    "INSERT INTO audit_changeevent (at, actor_id, actor_username, actor_role, patient_id, category, action,"
    " object_type, object_id, fields, ip, user_agent, request_id, nonce, mac, partition, seq, prev_hash, hash)"
    " VALUES (%s, NULL, 'framed', 'nurse', NULL, 'observation', 'delete', 'Observation', 7, '[]', NULL, '',"
    " '', 'n', %s, NULL, NULL, '', '')"
)


def test_the_sealer_raises_a_critical_alert_for_each_forged_event_and_names_no_user_or_patient(
    security: User, client_for: Callable[[User], Client], caplog: pytest.LogCaptureFixture
) -> None:
    """A vendor with the application's login inserts events without the key: the security team hears at once,
    not at the next verify run. The forged row's own who/whom is not trusted (it could frame anyone)."""
    genuine = _login_event()
    _forge(
        "INSERT INTO audit_autheventrecord (at, event, actor_id, target_id, username, ip, user_agent, detail,"
        " nonce, mac, partition, seq, prev_hash, hash)"
        " VALUES (%s, 'login', NULL, NULL, 'forger', NULL, '', '{}', 'n', %s, NULL, NULL, '', '')",
        [timezone.now(), "a" * 64],
    )
    _forge(FORGED_CHANGE, [timezone.now(), ""])  # no mac at all
    with caplog.at_level("CRITICAL", logger="audit.sealer"):
        run = seal_events()
    assert run.sealed["auth"] == 2
    assert run.sealed["change"] == 1
    alerts = list(Alert.objects.filter(rule="forged_event").order_by("pk"))
    assert [(a.severity, a.actor_id, a.patient_id) for a in alerts] == [(Alert.Severity.CRITICAL, None, None)] * 2
    subjects = set(AlertSubject.objects.filter(rule="forged_event").values_list("kind", "object_id"))
    forged_auth = AuthEventRecord.objects.get(username="forger")
    forged_change = ChangeEvent.objects.get(actor_username="framed")
    assert subjects == {("auth", forged_auth.pk), ("change", forged_change.pk)}
    assert not AlertSubject.objects.filter(object_id=genuine.pk, kind="auth").exists()
    # The log names ids and counts, not the forged row's content.
    assert "framed" not in caplog.text
    assert "forger" not in caplog.text
    assert str(forged_change.pk) in caplog.text
    # The alert's page lists the forged change event as what it claims to be.
    change_alert = AlertSubject.objects.get(kind="change").alert
    page = client_for(security).get(reverse("security:alert", args=[change_alert.pk])).content.decode()
    assert f"#{forged_change.pk}" in page
    assert "claims to be by framed" in page
    # Sealing again raises nothing new; verify still names both rows.
    seal_events()
    assert Alert.objects.filter(rule="forged_event").count() == 2
    assert sorted(p.event_id for p in verify_all()[0]) == sorted([forged_auth.pk, forged_change.pk])


def test_genuine_events_raise_no_forged_event_alert(
    ward: Ward, physician: User, client_for: Callable[[User], Client]
) -> None:
    client_for(physician).get(reverse("records:chart", args=[ward.treated.pk]))
    _login_event()
    assert seal_events().total >= 2
    assert not Alert.objects.filter(rule="forged_event").exists()


def test_a_failing_forged_event_alert_is_kept_as_a_rule_failure_and_the_batch_still_seals(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _forge(FORGED_CHANGE, [timezone.now(), "b" * 64])

    def broken(**kwargs: object) -> None:
        raise RuntimeError("alert store down")

    monkeypatch.setattr("audit.detection.inline.alert_raise", broken)
    assert seal_events().sealed["change"] == 1
    assert not ChangeEvent.objects.filter(hash="").exists()
    assert list(RuleFailure.objects.values_list("rule", "kind", "error")) == [
        ("forged_event", "change", "RuntimeError")
    ]


def test_an_unsealed_event_cannot_be_edited_even_while_being_sealed() -> None:
    event = _login_event()
    for statement in (
        "UPDATE audit_autheventrecord SET username = 'else' WHERE id = %s",
        # The sealer's own UPDATE shape, smuggling a content change in with it.
        "UPDATE audit_autheventrecord SET username = 'else', partition = 0, seq = 1, prev_hash = 'x', hash = 'y'"
        " WHERE id = %s",
        "UPDATE audit_autheventrecord SET mac = 'b' WHERE id = %s",
        "DELETE FROM audit_autheventrecord WHERE id = %s",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            raw(statement, [event.pk])
    assert AuthEventRecord.objects.get(pk=event.pk).username == "someone"


def test_a_sealed_event_cannot_be_sealed_again() -> None:
    event = _login_event()
    seal_events()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        raw("UPDATE audit_autheventrecord SET seq = 9, prev_hash = 'x', hash = 'y' WHERE id = %s", [event.pk])


def test_chain_columns_set_by_hand_on_an_unsealed_event_break_the_chain() -> None:
    """The one UPDATE the triggers allow, done by an attacker instead of the sealer: verify sees it."""
    event = _login_event()
    raw("UPDATE audit_autheventrecord SET partition = 0, seq = 1, prev_hash = %s, hash = %s WHERE id = %s",
        [GENESIS, "f" * 64, event.pk])  # fmt: skip
    problems, _ = verify_all()
    assert [p.kind for p in problems] == ["altered"]  # a link the key did not make


def test_a_sealer_crash_mid_batch_seals_nothing_and_the_next_run_seals_everything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for n in range(4):
        _login_event(f"user{n}")
    real_apply = sealer._apply

    def crash(model: type, links: list[tuple[int, int, str, str]]) -> None:
        real_apply(model, links)
        raise RuntimeError("sealer killed")

    monkeypatch.setattr(sealer, "_apply", crash)
    with pytest.raises(RuntimeError):
        seal_events()
    assert AuthEventRecord.objects.filter(hash="").count() == 4
    assert not AuditChainHead.objects.filter(stream="auth", last_seq__gt=0).exists()
    monkeypatch.setattr(sealer, "_apply", real_apply)
    assert seal_events().sealed["auth"] == 4
    assert verify_all()[0] == []


def test_events_left_unsealed_past_the_delay_are_reported() -> None:
    _login_event()
    later = timezone.now() + datetime.timedelta(minutes=5)
    assert [str(p) for p in unsealed_problems()] == []
    (problem,) = unsealed_problems(now=later)
    assert problem.kind == "unsealed"
    assert "1 event(s)" in str(problem)
    assert "seal_audit --loop" in str(problem)


def test_verify_audit_fails_when_the_sealer_has_not_run_for_too_long() -> None:
    # An event the application wrote an hour ago, which nothing sealed since (the sealer is down).
    stale = AuthEventRecord(event="login", username="late", detail={}, at=timezone.now() - datetime.timedelta(hours=1))
    stamp([stale])
    AuthEventRecord.objects.bulk_create([stale])
    problems, summary = verify_all()
    assert [p.kind for p in problems] == ["unsealed"]
    assert summary.events_sealed == 1  # and now it is sealed: the next run is clean
    assert verify_all()[0] == []


def test_rows_sealed_by_the_first_scheme_still_verify_and_their_edits_are_found() -> None:
    """An installation upgraded from request-time sealing keeps its old rows (mac empty, v1 hash)."""
    at = timezone.now()
    values = {
        "at": at, "event": "login", "actor_id": None, "target_id": None, "username": "old",
        "ip": None, "user_agent": "", "detail": {},
    }  # fmt: skip
    digest = link_hash_v1(AuthEventRecord, values, 3, 1, GENESIS)
    AuthEventRecord.objects.bulk_create([AuthEventRecord(**values, partition=3, seq=1, prev_hash=GENESIS, hash=digest)])
    AuditChainHead.objects.create(stream="auth", partition=3, last_seq=1, last_hash=digest)
    assert verify_all()[0] == []
    with guards_bypassed():
        raw("UPDATE audit_autheventrecord SET username = 'older' WHERE partition = 3")
    assert [p.kind for p in verify_all()[0]] == ["altered"]


def test_verify_checks_chain_segments_and_their_joins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cut into segments of 2, a 7-event chain verifies; an edit or a gap in a later segment is found."""
    monkeypatch.setattr("audit.verify.SEGMENT", 2)
    for n in range(7):
        _login_event(f"user{n}")
    seal_events()
    assert verify_all()[0] == []
    victim = AuthEventRecord.objects.get(seq=5)
    with guards_bypassed():
        raw("DELETE FROM audit_autheventrecord WHERE seq IN (3, 4)")
    assert [str(p) for p in verify_all()[0]] == ["MISSING: auth partition 0 seq 3: events 3 to 4 are gone"]
    with guards_bypassed():
        raw("UPDATE audit_autheventrecord SET username = 'x' WHERE id = %s", [victim.pk])
    assert [p.kind for p in verify_all()[0]] == ["missing"]  # the first problem of the chain


def test_seal_audit_command_seals_events_and_direct_changes() -> None:
    _login_event()
    change_event_record(actor=None, patient_id=None, category="demographics", action="create", fields=[])
    out = StringIO()
    call_command("seal_audit", stdout=out)
    assert "Sealed 2 event(s) (0 access, 1 change, 1 auth)." in out.getvalue()
    assert not AuthEventRecord.objects.filter(hash="").exists()
    assert not ChangeEvent.objects.filter(hash="").exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_and_sealers_lose_duplicate_and_leave_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Writers commit events while two sealers run, one of which crashes once: every event ends up sealed
    exactly once, on one gapless chain that verifies."""
    if connection.vendor == "sqlite":
        pytest.skip("SQLite has one writer at a time: concurrency is PostgreSQL's to prove")
    writers, per_writer = 6, 25
    errors: list[BaseException] = []
    done = threading.Event()
    crashed = threading.Event()
    real_apply = sealer._apply

    def crash_once(model: type, links: list[tuple[int, int, str, str]]) -> None:
        real_apply(model, links)
        if not crashed.is_set():
            crashed.set()
            raise RuntimeError("sealer killed mid-batch")

    monkeypatch.setattr(sealer, "_apply", crash_once)

    def write(n: int) -> None:
        try:
            for k in range(per_writer):
                with transaction.atomic():
                    access_event_record(
                        actor=None, patient_ids=[n * 1000 + k], categories=["demographics"], action="view"
                    )
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    def seal() -> None:
        try:
            while not done.is_set():
                with contextlib.suppress(RuntimeError):  # the crash: rolled back; go on like --loop does
                    seal_events(batch=7)
        finally:
            connection.close()

    sealers = [threading.Thread(target=seal) for _ in range(2)]
    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in sealers + threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    for thread in sealers:
        thread.join()
    assert errors == []
    assert crashed.is_set()
    seal_events()
    total = writers * per_writer
    assert AccessEvent.objects.count() == total
    assert AccessEvent.objects.filter(hash="").count() == 0
    assert AccessEvent.objects.aggregate(top=Max("seq"))["top"] == total
    assert AccessEvent.objects.values("seq").distinct().count() == total
    assert AccessEvent.objects.values("patient_id").distinct().count() == total
    assert verify_all()[0] == []


def _verify_command(*args: str) -> tuple[int, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("verify_audit", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return 1, err.getvalue() + str(exc)
    return 0, out.getvalue()


def test_verify_since_a_checkpoint_checks_only_what_was_sealed_after_it(tmp_path: Path) -> None:
    for n in range(4):
        _login_event(f"before{n}")
    seal_events()
    write_checkpoint(tmp_path)
    for n in range(3):
        _login_event(f"after{n}")
    code, output = _verify_command(f"--checkpoints={tmp_path}", "--since=latest")
    assert code == 0, output
    assert "3 events in" in output
    assert "since checkpoint 1" in output
    late = AuthEventRecord.objects.get(username="after1")
    with guards_bypassed():
        raw("UPDATE audit_autheventrecord SET username = 'x' WHERE id = %s", [late.pk])
    code, output = _verify_command(f"--checkpoints={tmp_path}", "--since=1")
    assert code == 1
    assert f"ALTERED: auth partition 0 seq {late.seq} (event id {late.pk})" in output


def test_verify_since_refuses_a_forged_or_missing_checkpoint(tmp_path: Path) -> None:
    _login_event()
    code, output = _verify_command("--since=latest")
    assert code == 1
    assert "--since needs --checkpoints" in output
    code, output = _verify_command(f"--checkpoints={tmp_path}", "--since=latest")
    assert code == 1
    assert "No checkpoint" in output
    seal_events()
    written = write_checkpoint(tmp_path)
    envelope = json.loads(written.path.read_text())
    envelope["payload"]["chains"][0]["seq"] = 0  # "start from the beginning": would skip nothing, but unsigned
    written.path.chmod(0o644)
    written.path.write_text(json.dumps(envelope))
    code, output = _verify_command(f"--checkpoints={tmp_path}", "--since=1")
    assert code == 1
    assert "signature does not verify" in output


@pytest.mark.django_db(transaction=True)
def test_parallel_verification_finds_what_one_process_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    if connection.vendor == "sqlite":
        pytest.skip("worker processes need a database they can connect to: PostgreSQL")
    monkeypatch.setattr("audit.verify.SEGMENT", 5)
    for n in range(23):
        _login_event(f"user{n}")
    seal_events()
    code, output = _verify_command("--jobs=2")
    assert code == 0, output
    assert "23 events in" in output
    assert "(2 process(es))" in output
    victim = AuthEventRecord.objects.get(seq=17)
    with guards_bypassed():
        raw("UPDATE audit_autheventrecord SET username = 'x' WHERE id = %s", [victim.pk])
    code, output = _verify_command("--jobs=2")
    assert code == 1
    assert f"ALTERED: auth partition 0 seq 17 (event id {victim.pk})" in output


def test_a_batch_of_change_events_sharing_most_columns_is_stored_as_stamped_and_seals_and_verifies(
    nurse: User,
) -> None:
    # An import's change events share the instant, actor, category and fields; on PostgreSQL those are
    # sent once (audit/chain.py _insert). What is stored must be what the mac was made over.
    from audit.chain import content_fields, row_mac
    from audit.services import change_events_record

    events = change_events_record(
        actor=nurse,
        rows=[(7, 100 + n) for n in range(5)] + [(None, None)],
        category="observations",
        action="import",
        fields=("value", "unit", "display"),
        object_type="Observation",
    )

    assert len({event.pk for event in events}) == 6
    names = content_fields(ChangeEvent)
    for event in events:
        stored = ChangeEvent.objects.get(pk=event.pk)
        assert [getattr(stored, name) for name in names] == [getattr(event, name) for name in names]
        assert stored.mac == event.mac == row_mac(ChangeEvent, [getattr(stored, name) for name in names])
    assert [e.object_id for e in ChangeEvent.objects.filter(pk__in=[e.pk for e in events]).order_by("pk")] == [
        100,
        101,
        102,
        103,
        104,
        None,
    ]
    seal_events()
    assert verify_all()[0] == []


def test_a_batch_whose_columns_differ_in_awkward_ways_is_stored_exactly_as_stamped(nurse: User) -> None:
    # The differing columns travel as one JSON document on PostgreSQL (audit/chain.py _json_rows):
    # quotes, backslashes, non-ASCII, NULLs beside values, instants apart by a microsecond and JSON
    # columns of several shapes must come back as the mac covered them, in order, and seal and verify.
    from audit.chain import content_fields, insert_unsealed, row_mac

    at = timezone.now().replace(microsecond=999_999)
    awkward = ['a"b', "back\\slash", "ünïcødé ✓", "new\nline\ttab", "", "'; DROP TABLE x; --"]
    events = [
        ChangeEvent(
            at=at + datetime.timedelta(microseconds=n),
            actor_id=nurse.pk if n % 2 else None,
            actor_username=text,
            patient_id=None if n == 3 else 10**12 + n,
            category="observations",
            action="import",
            object_type=text[:64],
            object_id=n,
            fields=[text] if n % 2 else {"nested": [n, None, text]},
        )
        for n, text in enumerate(awkward)
    ]
    with CaptureQueriesContext(connection) as queries:
        insert_unsealed(events)

    if connection.vendor == "postgresql":
        assert any("json_array_elements" in q["sql"] for q in queries.captured_queries)
    names = content_fields(ChangeEvent)
    stored = {row.pk: row for row in ChangeEvent.objects.filter(pk__in=[e.pk for e in events])}
    assert sorted(stored) == [e.pk for e in events]  # keys handed back in the rows' order
    for event in events:
        row = stored[event.pk]
        assert [getattr(row, name) for name in names] == [getattr(event, name) for name in names]
        assert row.mac == row_mac(ChangeEvent, [getattr(row, name) for name in names])
    seal_events()
    assert verify_all()[0] == []


def _batches_written(nurse: User) -> tuple[list[int], list[tuple[dict[str, object], tuple[object, object]]]]:
    """Change events written as columns (audit/chain.py insert_unsealed_batches) with awkward values:
    quotes, backslashes, non-ASCII, NULLs beside values, an empty JSON list, an IPv6 address to normalise."""
    from audit.chain import insert_unsealed_batches

    awkward = ['a"b', "back\\slash", "ünïcødé ✓", "new\nline\ttab", "", "'; DROP TABLE x; --"]
    shared = {
        "at": timezone.now().replace(microsecond=999_999),
        "actor_id": nurse.pk,
        "actor_username": awkward[0],
        "actor_role": "nurse",
        "action": "import",
        "ip": "2001:DB8:0:0:0:0:0:1",
        "user_agent": awkward[2],
        "request_id": "",
    }
    batches = [
        (
            {"object_type": text[:64], "category": "observations", "fields": [text] if n % 2 else []},
            [(10**12 + n, n), (None, None)],
        )
        for n, text in enumerate(awkward)
    ]
    keys = insert_unsealed_batches(ChangeEvent, shared=shared, varying=("patient_id", "object_id"), batches=batches)
    expected = [({**shared, **own}, row) for own, rows in batches for row in rows]
    return keys, expected


def test_events_written_as_columns_are_stored_as_their_macs_cover_and_seal_and_verify(nurse: User) -> None:
    # An import's change events are written without a model instance each: what is stored must be what
    # the mac covers (the same bytes as canonical_v2 of the stored row), in order, with a nonce each.
    from audit.chain import content_fields, row_mac

    keys, expected = _batches_written(nurse)

    assert len(keys) == len(expected) == 12
    assert keys == sorted(keys)  # handed back in the rows' order
    stored = {row.pk: row for row in ChangeEvent.objects.filter(pk__in=keys)}
    names = content_fields(ChangeEvent)
    for key, (columns, (patient_id, object_id)) in zip(keys, expected, strict=True):
        row = stored[key]
        assert (row.patient_id, row.object_id, row.fields, row.object_type) == (
            patient_id,
            object_id,
            columns["fields"],
            columns["object_type"],
        )
        assert (row.at, row.actor_username, row.user_agent) == (
            columns["at"],
            columns["actor_username"],
            columns["user_agent"],
        )
        assert row.ip == "2001:db8::1"  # normalised, as the mac covered it
        assert row.mac == row_mac(ChangeEvent, [getattr(row, name) for name in names])
        assert (row.seq, row.hash) == (None, "")
    assert len({row.nonce for row in stored.values()}) == 12
    seal_events()
    assert verify_all()[0] == []


def test_events_written_as_columns_name_every_content_column_once() -> None:
    # A column left out would be stored as its default while the mac covered nothing for it: refused.
    from audit.chain import insert_unsealed_batches

    shared = {"at": timezone.now(), "actor_id": None, "actor_username": "", "actor_role": "", "action": "import"}
    shared |= {"ip": None, "user_agent": "", "request_id": ""}
    own = {"object_type": "Observation", "category": "observations", "fields": []}
    with pytest.raises(ValueError, match="exactly once"):
        insert_unsealed_batches(ChangeEvent, shared=shared, varying=("patient_id",), batches=[(own, [(1,)])])
    with pytest.raises(ValueError, match="exactly once"):
        insert_unsealed_batches(
            ChangeEvent,
            shared={**shared, "patient_id": 1},
            varying=("patient_id", "object_id"),
            batches=[(own, [(1, 2)])],
        )
    with pytest.raises(ValueError, match="same columns"):
        insert_unsealed_batches(
            ChangeEvent,
            shared=shared,
            varying=("patient_id", "object_id"),
            batches=[(own, [(1, 2)]), ({**own, "request_id": "x"}, [(1, 3)])],
        )
    assert not ChangeEvent.objects.filter(action="import").exists()


def test_differing_columns_travel_as_one_json_document_only_when_every_value_has_an_exact_json_form() -> None:
    # audit/chain.py _json_rows (PostgreSQL's batch INSERT): a value the JSON text could not carry
    # exactly (a naive instant, a JSON column with its own encoder, a NULL JSON value, bytes) sends the
    # columns as arrays instead; what it does carry comes back row by row, in order.
    from psycopg.types.json import Jsonb

    from audit.chain import _json_rows

    at = datetime.datetime(2026, 12, 7, 1, 2, 3, 999_999, tzinfo=datetime.UTC)
    json_values = [
        Jsonb(["x"], dumps=json.dumps),
        Jsonb({"k": [1, None]}, dumps=json.dumps),
        Jsonb([], dumps=json.dumps),
    ]
    document = _json_rows(
        [
            ("bigint", [1, None, 2**40]),
            ("varchar", ['a"b', "", "ü\n"]),
            ("timestamp with time zone", [at, at, None]),
            ("jsonb", json_values),
        ]
    )
    assert document is not None
    assert json.loads(document) == [
        [1, 'a"b', at.isoformat(), ["x"]],
        [None, "", at.isoformat(), {"k": [1, None]}],
        [2**40, "ü\n", None, []],
    ]
    for refused in (
        [("timestamp with time zone", [at.replace(tzinfo=None)])],
        [("jsonb", [Jsonb(["x"], dumps=lambda value: json.dumps(value, sort_keys=True))])],
        [("jsonb", [Jsonb(None, dumps=json.dumps)])],
        [("bytea", [b"\x00"])],
    ):
        assert _json_rows(refused) is None


def test_events_written_as_columns_go_to_copy_unsealed_with_their_batch_values_prepared_once(nurse: User) -> None:
    # audit/chain.py _copy_rows (PostgreSQL's COPY of an import's events): every column but the key, in
    # the model's order; each row its batch's values, its own patient and object, nonce and mac; no
    # place in a chain; a JSON column as its JSON text (parsed by the server as the adapter's would be).
    from audit.chain import _copy_rows

    at = timezone.now()
    shared = {"at": at, "actor_id": nurse.pk, "actor_username": "n", "actor_role": "nurse", "action": "import"}
    shared |= {"ip": None, "user_agent": "", "request_id": ""}
    fixed_of = [
        {**shared, "object_type": "Condition", "category": "conditions", "fields": ["code"]},
        {**shared, "object_type": "Observation", "category": "observations", "fields": ["unit", "value"]},
    ]
    made = [(0, [7, 70], "n0", "m0"), (1, [7, 71], "n1", "m1"), (1, [None, None], "n2", "m2")]
    rows = _copy_rows(ChangeEvent, fixed_of, ("patient_id", "object_id"), made, connection)

    names = [field.attname for field in ChangeEvent._meta.concrete_fields if not field.primary_key]
    as_dicts = [dict(zip(names, row, strict=True)) for row in rows]
    assert [(r["patient_id"], r["object_id"], r["nonce"], r["mac"]) for r in as_dicts] == [
        (7, 70, "n0", "m0"),
        (7, 71, "n1", "m1"),
        (None, None, "n2", "m2"),
    ]
    assert [r["object_type"] for r in as_dicts] == ["Condition", "Observation", "Observation"]
    assert [json.loads(r["fields"]) for r in as_dicts] == [["code"], ["unit", "value"], ["unit", "value"]]
    assert {(r["partition"], r["seq"], r["prev_hash"], r["hash"]) for r in as_dicts} == {(None, None, "", "")}
    assert {r["actor_id"] for r in as_dicts} == {nurse.pk}
