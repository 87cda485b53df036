"""audit/history.py: rows inserted together get the change history django-auditlog writes for a saved row."""

from __future__ import annotations

from typing import Any

import pytest
from auditlog.context import disable_auditlog, set_actor
from auditlog.models import LogEntry
from django.db.models.signals import post_save

from accounts.models import User
from audit import history
from audit.history import log_created
from exchange.models import DirectoryEntry

pytestmark = pytest.mark.django_db


def _entry(row: DirectoryEntry) -> LogEntry:
    return LogEntry.objects.get_for_object(row).get()


def _comparable(entry: LogEntry, row: DirectoryEntry) -> dict[str, Any]:
    """The entry's content with what differs between two rows (key, instant) put aside."""
    changes = {
        name: ["<key>" if name == "id" else ("<at>" if name == "created_at" else value) for value in pair]
        for name, pair in (entry.changes_dict or {}).items()
    }
    data = dict(entry.serialized_data or {})
    data.pop("pk", None)
    return {
        "action": entry.action,
        "changes": changes,
        "content_type": entry.content_type_id,
        "object_pk": entry.object_pk == str(row.pk),
        "object_id": entry.object_id == row.pk,
        "object_repr": entry.object_repr.replace(str(row.pk), "<key>"),
        "serialized_data": data,
        "actor": entry.actor_id,
        "remote_addr": entry.remote_addr,
        "cid": entry.cid,
        "additional_data": entry.additional_data,
    }


def _pair(**fields: Any) -> tuple[DirectoryEntry, DirectoryEntry]:
    """One row saved (django-auditlog's own receiver) and one inserted together and logged here."""
    saved = DirectoryEntry.objects.create(source_id="saved", **fields)
    (bulk,) = DirectoryEntry.objects.bulk_create([DirectoryEntry(source_id="bulk", **fields)])
    log_created(DirectoryEntry, [bulk])
    return saved, bulk


def test_a_row_inserted_together_has_the_entry_a_saved_row_has() -> None:
    saved, bulk = _pair(kind="Practitioner", identifier_system="urn:x", identifier_value="42", name="Dr A")

    ours, theirs = _comparable(_entry(bulk), bulk), _comparable(_entry(saved), saved)
    ours["changes"]["source_id"] = theirs["changes"]["source_id"]  # the one field that differs on purpose
    assert ours == theirs
    assert ours["action"] == LogEntry.Action.CREATE
    assert ours["object_pk"]
    assert ours["object_id"]


def test_the_actor_and_address_of_a_set_actor_scope_are_recorded(compliance: User) -> None:
    with set_actor(compliance, remote_addr="192.0.2.7"):
        saved, bulk = _pair(kind="Organization", name="Clinic")

    assert (_entry(bulk).actor_id, _entry(bulk).remote_addr) == (compliance.pk, "192.0.2.7")
    assert (_entry(saved).actor_id, _entry(saved).remote_addr) == (compliance.pk, "192.0.2.7")


def test_many_rows_one_insert_of_their_entries(django_assert_num_queries: Any) -> None:
    rows = DirectoryEntry.objects.bulk_create(
        [DirectoryEntry(kind="Practitioner", source_id=f"p{i}") for i in range(5)]
    )
    LogEntry.objects.all().delete()
    with django_assert_num_queries(1):
        log_created(DirectoryEntry, rows)
    assert sorted(LogEntry.objects.values_list("object_id", flat=True)) == sorted(row.pk for row in rows)


def test_nothing_when_the_history_is_disabled() -> None:
    (row,) = DirectoryEntry.objects.bulk_create([DirectoryEntry(kind="Practitioner", source_id="p")])
    with disable_auditlog():
        log_created(DirectoryEntry, [row])
    assert not LogEntry.objects.get_for_object(row).exists()


def test_a_row_without_its_key_is_refused() -> None:
    with pytest.raises(ValueError, match="key"):
        log_created(DirectoryEntry, [DirectoryEntry(kind="Practitioner", source_id="p")])


def test_another_listener_gets_the_save_signals_of_every_row() -> None:
    heard: list[int] = []

    def listener(sender: Any, instance: DirectoryEntry, created: bool, **kwargs: Any) -> None:
        heard.append(instance.pk)

    post_save.connect(listener, sender=DirectoryEntry, dispatch_uid="test-bulk-history")
    try:
        assert not history._only_auditlog_listens(DirectoryEntry)
        rows = DirectoryEntry.objects.bulk_create(
            [DirectoryEntry(kind="Practitioner", source_id=f"p{i}") for i in range(3)]
        )
        log_created(DirectoryEntry, rows)
    finally:
        post_save.disconnect(sender=DirectoryEntry, dispatch_uid="test-bulk-history")
    assert heard == [row.pk for row in rows]
    assert all(LogEntry.objects.get_for_object(row).count() == 1 for row in rows)


def test_only_django_auditlog_listens_to_directory_entries() -> None:
    # The importer's fast path: if this fails, a listener was added and every row goes through signals.
    assert history._only_auditlog_listens(DirectoryEntry)
