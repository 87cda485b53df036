"""The actor marker's MAC, the sealer and what verify_audit finds afterwards, on SQLite and PostgreSQL.

The rows of ``audit_directchange`` are written here with the ORM (as the trigger would on PostgreSQL),
so the sealer's logic is exercised on both databases; the triggers themselves are attacked in
test_postgres_guards.py.
"""

from __future__ import annotations

from collections.abc import Callable
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.test import Client, override_settings
from django.urls import reverse

from accounts.models import User
from audit import guards
from audit.chain import AuditChainHead
from audit.checks import check_database_guards
from audit.models import DirectChange, DirectChangeSeal
from audit.sealer import seal_events
from audit.sealing import seal_direct_changes
from audit.services import auth_event_record
from audit.verify import verify_all
from healthcrypt.markers import make_marker, verify_marker
from tests.audit.test_integrity import guards_bypassed
from tests.conftest import INSTALL_DIRECT_CHANGES

pytestmark = pytest.mark.django_db


def direct_change(marker: str = "", txid: int | None = 1000, **fields: object) -> DirectChange:
    values: dict[str, object] = {
        "table_name": "records_patient",
        "operation": "UPDATE",
        "row_id": 1,
        "actor_marker": marker,
        "db_user": "someone",
        "txid": txid,
    }
    return DirectChange.objects.create(**{**values, **fields})


# --- The marker --------------------------------------------------------------------------------------


def test_marker_verifies_for_its_own_transaction_only() -> None:
    marker = make_marker(actor="user:5", txid=1234)
    assert marker.startswith("v1:user:5:1234:")
    assert len(marker.rsplit(":", 1)[1]) == 32
    verified = verify_marker(marker, txid=1234)
    assert verified is not None
    assert (verified.actor, verified.txid) == ("user:5", 1234)
    assert verify_marker(marker, txid=1235) is None  # replayed in another transaction
    assert verify_marker(marker, txid=None) is None


@pytest.mark.parametrize(
    "marker",
    [
        "",
        "user:5",
        "v1:user:5:1234:" + "0" * 32,
        "v1:user:6:1234:{mac}",  # another actor under user 5's MAC
        "v1::1234:{mac}",
        "v1:user:5:abc:{mac}",
        "v2:user:5:1234:{mac}",
    ],
)
def test_forged_markers_do_not_verify(marker: str) -> None:
    mac = make_marker(actor="user:5", txid=1234).rsplit(":", 1)[1]
    assert verify_marker(marker.format(mac=mac), txid=1234) is None


def test_marker_made_with_another_key_does_not_verify() -> None:
    marker = make_marker(actor="user:5", txid=1234)
    with override_settings(AUDIT_MARKER_KEY="Z" * 43):
        assert verify_marker(marker, txid=1234) is None
    assert verify_marker(marker, txid=1234) is not None


# --- Sealing -----------------------------------------------------------------------------------------


def test_sealing_copies_each_change_with_the_verdict_on_its_marker() -> None:
    genuine = direct_change(make_marker(actor="user:5", txid=1000), txid=1000)
    replayed = direct_change(make_marker(actor="user:5", txid=1000), txid=1001)
    typed = direct_change("user:5", txid=1002)
    result = seal_direct_changes()
    assert (result.sealed, result.unverified) == (3, 2)
    assert sorted(result.unverified_ids) == [replayed.pk, typed.pk]
    seals = {seal.direct_change_id: seal for seal in DirectChangeSeal.objects.all()}
    assert (seals[genuine.pk].verified, seals[genuine.pk].actor) == (True, "user:5")
    assert (seals[replayed.pk].verified, seals[replayed.pk].actor) == (False, "")
    assert seals[typed.pk].db_user == "someone"
    assert [seal.seq for seal in DirectChangeSeal.objects.order_by("seq")] == [1, 2, 3]
    assert {seal.partition for seal in seals.values()} == {0}


def test_sealing_is_idempotent_and_picks_up_rows_committed_late_with_a_lower_id() -> None:
    direct_change(id=50)
    direct_change(id=60)
    assert seal_direct_changes().sealed == 2
    assert seal_direct_changes().sealed == 0
    # A long transaction can commit a row whose id is below the last sealed one.
    late = direct_change(id=40)
    assert seal_direct_changes(batch=1).sealed == 1
    assert DirectChangeSeal.objects.get(direct_change_id=late.pk).seq == 3
    problems, _ = verify_all()
    assert problems == []


def test_a_recent_pass_looks_only_at_recent_ids_and_a_full_pass_seals_a_very_late_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from audit import sealing

    monkeypatch.setattr(sealing, "RECENT", 100)
    assert seal_direct_changes(recent=True).sealed == 0  # nothing sealed yet: looks at everything
    direct_change(id=1000)
    assert seal_direct_changes(recent=True).sealed == 1
    near = direct_change(id=950)  # committed late, within the recent window: sealed by the next round
    far = direct_change(id=800)  # committed very late, beyond it
    assert sealing.recent_floor() == 900  # the last sealed id less RECENT
    assert seal_direct_changes(recent=True).sealed == 1
    assert DirectChangeSeal.objects.filter(direct_change_id=near.pk).exists()
    assert not DirectChangeSeal.objects.filter(direct_change_id=far.pk).exists()
    # The loop's full pass (every AUDIT_SEAL_FULL_INTERVAL seconds), seal_audit and verify_audit seal it.
    assert seal_direct_changes().sealed == 1
    assert DirectChangeSeal.objects.filter(direct_change_id=far.pk).exists()
    problems, _ = verify_all()
    assert problems == []


def test_idle_sealer_creates_no_chain() -> None:
    out = StringIO()
    call_command("seal_audit", stdout=out)
    assert "Sealed 0 direct change(s); 0 without a valid application marker." in out.getvalue()
    assert not AuditChainHead.objects.filter(stream=DirectChangeSeal.STREAM).exists()


def test_deleted_or_altered_sealed_change_is_reported() -> None:
    kept, deleted, altered = (direct_change() for _ in range(3))
    seal_direct_changes()
    with guards_bypassed():
        DirectChange.objects.filter(pk=deleted.pk).delete()
        DirectChange.objects.filter(pk=altered.pk).update(db_user="application")
    problems, _ = verify_all()
    assert [str(problem) for problem in problems] == [
        f"DELETED: direct partition 0 seq 2 (event id {DirectChangeSeal.objects.get(direct_change_id=deleted.pk).pk}):"
        f" direct change #{deleted.pk} was deleted after it was sealed",
        f"ALTERED: direct partition 0 seq 3 (event id {DirectChangeSeal.objects.get(direct_change_id=altered.pk).pk}):"
        f" direct change #{altered.pk} no longer matches its seal",
    ]
    assert DirectChange.objects.filter(pk=kept.pk).exists()


def test_seals_are_append_only() -> None:
    direct_change()
    seal_direct_changes()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        DirectChangeSeal.objects.update(verified=True)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        DirectChangeSeal.objects.all().delete()


# --- Chain heads --------------------------------------------------------------------------------------


def test_rewritten_chain_head_is_caught() -> None:
    for number in range(3):
        auth_event_record(
            event="login", actor=None, target=None, username=f"user{number}", ip=None, user_agent="", detail={}
        )
    seal_events()
    head = AuditChainHead.objects.filter(stream="auth").first()
    assert head is not None
    AuditChainHead.objects.filter(pk=head.pk).update(last_hash="f" * 64)
    problems, _ = verify_all()
    assert [str(problem) for problem in problems] == [
        f"ALTERED: auth partition {head.partition} seq {head.last_seq}: "
        "the recorded head does not match the last event (rewritten)"
    ]


# --- SQLite's guards ----------------------------------------------------------------------------------


@pytest.mark.skipif(connection.vendor != "sqlite", reason="PostgreSQL's guards: test_postgres_guards.py")
def test_sqlite_guard_problems_name_a_dropped_trigger_and_an_open_switch() -> None:
    assert guards.guard_problems(connection) == []
    # SQLite's DDL is transactional: the test's rollback puts the trigger back.
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER audit_directchangeseal_no_delete")
    with guards_bypassed():
        problems = guards.guard_problems(connection)
    assert problems == [
        "guard trigger audit_directchangeseal_no_delete on audit_directchangeseal is missing",
        "the maintenance switch (a row in audit_guard_bypass) is open: the append-only guards are off",
    ]


# --- The compliance admin ------------------------------------------------------------------------------


def test_admin_lists_the_login_and_the_sealers_verdict_and_filters_by_it(
    compliance: User, client_for: Callable[[User], Client]
) -> None:
    genuine = direct_change(make_marker(actor="user:5", txid=1000), txid=1000, backend_pid=4242)
    forged = direct_change("user:5", txid=1001, db_user="vendor_dba", client_addr="10.1.2.3")
    seal_direct_changes()
    pending = direct_change(txid=1002)
    officer = client_for(compliance)
    url = reverse("admin:audit_directchange_changelist")

    def ids(**params: str) -> set[int]:
        response = officer.get(url, params)
        assert response.status_code == 200
        return {obj.pk for obj in response.context["cl"].result_list}

    assert ids() == {genuine.pk, forged.pk, pending.pk}
    assert ids(direct="yes") == {forged.pk}
    assert ids(direct="no") == {genuine.pk}
    assert ids(direct="unsealed") == {pending.pk}
    assert ids(actor_id="5") == {genuine.pk}  # the forged "user:5" names nobody
    page = officer.get(url).content.decode()
    for text in ("NOT verified: outside the application", "verified (the application)", "not yet sealed"):
        assert text in page
    for text in ("vendor_dba", "10.1.2.3", "4242", "1001"):
        assert text in page


def test_system_check_passes_with_the_guards_in_place_and_only_where_databases_are_checked() -> None:
    assert check_database_guards(databases=["default"]) == []
    assert check_database_guards() == []  # plain `manage.py check`: no database, nothing to say


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the DDL event triggers exist on PostgreSQL only")
def test_a_fresh_install_records_no_direct_change_of_its_own() -> None:
    # A migration that alters a clinical table after the guards is recorded as DDL, as any schema
    # change is; those of the application mark their transaction (records/db.py marked_migration),
    # so everything the install left verifies as a migration's (tests/conftest.py read it before the
    # first test and cleared it).
    assert INSTALL_DIRECT_CHANGES, "records 0007 and 0008 alter clinical tables after the guards"
    unverified = [(table, command) for table, command, actor in INSTALL_DIRECT_CHANGES if actor is None]
    assert unverified == []
    assert {actor for _, _, actor in INSTALL_DIRECT_CHANGES} <= {
        "system:migrate:records.0007_name_search_indexes",
        "system:migrate:records.0008_appointments",
        "system:migrate:records.0009_imported_reports_and_studies",
        "system:migrate:records.0011_observation_panel",
        "system:migrate:exchange.0001_hl7",
        "system:migrate:exchange.0005_packages",
        "system:migrate:audit.0009_sealer",
        "system:migrate:audit.0010_access_sections",
        "system:migrate:audit.0011_monthly_partitions",
    }
