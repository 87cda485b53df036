"""Give existing rows their row identity (``row_uid``), one random UUID per row, for migrations.

Adding ``row_uid`` with ``default=uuid.uuid4`` in one step would give every existing row the SAME
value: Django evaluates the default once and writes it into the whole column. So the migrations
add the column nullable, call :func:`assign_row_uids` (a RunPython step of its own migration, so
PostgreSQL never alters a table with pending trigger events), and only then make it unique and
not null.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any

from django.db.backends.base.schema import BaseDatabaseSchemaEditor

BATCH_SIZE = 1000


def assign_row_uids(model: Any, *, using: str, batch_size: int = BATCH_SIZE) -> int:
    """Give each row of ``model`` whose ``row_uid`` is NULL its own random UUID; return how many.

    Batched in primary-key order, so memory stays flat on large tables and an interrupted run
    continues where it stopped.
    """
    manager = model._base_manager.using(using)
    assigned = 0
    while True:
        pks = list(manager.filter(row_uid__isnull=True).order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not pks:
            return assigned
        # Only row_uid is written: the instances are shells that carry the key and the new identity.
        manager.bulk_update([model(pk=pk, row_uid=uuid.uuid4()) for pk in pks], ["row_uid"])
        assigned += len(pks)


def populate(
    app_label: str, model_names: Iterable[str], *, before: Callable[[str], None] | None = None
) -> Callable[[Any, BaseDatabaseSchemaEditor], None]:
    """A RunPython function that assigns row identities to every listed model of ``app_label``.

    ``before(alias)`` runs first inside the migration's transaction (records uses it to mark the
    transaction as the application's for the database's direct-change triggers).
    """
    names = tuple(model_names)

    def forwards(apps: Any, schema_editor: BaseDatabaseSchemaEditor) -> None:
        alias = schema_editor.connection.alias
        if before is not None:
            before(alias)
        for name in names:
            assign_row_uids(apps.get_model(app_label, name), using=alias)

    return forwards
