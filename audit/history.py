"""django-auditlog's change history of rows inserted together (``bulk_create``/COPY) instead of saved one by one.

``bulk_create`` sends no ``post_save``, so django-auditlog writes no history for it. A caller that
inserts new rows of a registered model together (the FHIR importer's directory entries,
exchange/fhir/importer.py) calls :func:`log_created` right after, in the same transaction: one
``LogEntry`` per row with what django-auditlog's own ``post_save`` receiver would have written for
that row (action *create*, the changes as its diff computes them with the model's include, exclude and
mask settings, the object's key and representation, its content type, serialized data, additional
data, correlation id), and the actor and address of an ``auditlog.context.set_actor`` scope (the
middleware's), which django-auditlog fills in from ``pre_save`` of each entry, so that signal is sent
for each entry as ``save()`` would. The entries go in one INSERT instead of one per row.

That is only the same as saving each row when django-auditlog is the only listener to the model's
save signals and nobody listens to its ``pre_log``/``post_log``. Otherwise :func:`log_created` sends
every row's ``pre_save`` and ``post_save`` as ``save()`` would, and each listener (django-auditlog
included) does what it does for a saved row. A failure raises, in the caller's transaction (fail closed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from auditlog import get_logentry_model
from auditlog.cid import get_cid
from auditlog.context import auditlog_disabled
from auditlog.diff import model_instance_diff
from auditlog.registry import auditlog
from auditlog.signals import post_log, pre_log
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models.signals import post_save, pre_save
from django.utils.encoding import smart_str


def _live(signal: Any, sender: type) -> list[Any]:
    # Django 5: (sync receivers, async receivers); weak references already resolved.
    sync, asynchronous = signal._live_receivers(sender)
    return [*sync, *asynchronous]


def _only_auditlog_listens(model: type[models.Model]) -> bool:
    """Does nothing but django-auditlog's own history hear ``model``'s saves?"""
    ours = set(auditlog._signals.values())
    if pre_log.has_listeners(model) or post_log.has_listeners(model):
        return False
    return all(receiver in ours for signal in (pre_save, post_save) for receiver in _live(signal, model))


def _send_save_signals(model: type[models.Model], rows: Sequence[models.Model], using: str) -> None:
    for row in rows:
        pre_save.send(model, instance=row, raw=False, using=using, update_fields=None)
    for row in rows:
        post_save.send(model, instance=row, created=True, raw=False, using=using, update_fields=None)


def log_created(model: type[models.Model], rows: Sequence[models.Model]) -> None:
    """Write the change history of new ``rows`` of ``model`` just inserted together (all with their keys).

    Nothing when the model is not registered with django-auditlog or its history is disabled in
    this context (``auditlog.context.disable_auditlog``), as for a saved row.
    """
    if not rows:
        return
    using = rows[0]._state.db or model._default_manager.db
    if not _only_auditlog_listens(model):
        _send_save_signals(model, rows, using)
        return
    if auditlog_disabled.get() or not auditlog.contains(model):
        return
    entry_model = get_logentry_model()
    manager: Any = entry_model.objects
    content_type = ContentType.objects.get_for_model(model)
    # Set by auditlog.conf (default False), as its receivers read it.
    as_json = bool(getattr(settings, "AUDITLOG_STORE_JSON_CHANGES", False))
    entries = []
    for row in rows:
        if row.pk is None:
            raise ValueError("The change history of a row is written after the row (it names the row's key).")
        changes = model_instance_diff(None, row, fields_to_check=None, use_json_for_changes=as_json)
        if not changes:
            continue  # django-auditlog writes no entry without changes either
        fields: dict[str, Any] = {
            "action": entry_model.Action.CREATE,
            "changes": changes,
            "content_type": content_type,
            "object_pk": manager._get_pk_value(row),
            "object_repr": smart_str(row),
            "serialized_data": manager._get_serialized_data_or_none(row),
        }
        if isinstance(row.pk, int):
            fields["object_id"] = row.pk
        get_additional_data = getattr(row, "get_additional_data", None)
        if callable(get_additional_data):
            fields["additional_data"] = get_additional_data()
        fields["cid"] = get_cid()
        entries.append(entry_model(**fields))
    entry_using = manager.db
    for entry in entries:
        # The actor and address of a set_actor scope are filled in by its pre_save receiver.
        pre_save.send(entry_model, instance=entry, raw=False, using=entry_using, update_fields=None)
    manager.bulk_create(entries)
    for entry in entries:
        post_save.send(entry_model, instance=entry, created=True, raw=False, using=entry_using, update_fields=None)
