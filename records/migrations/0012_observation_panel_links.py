# Observation components point to their panel (records.models.Observation.panel), step 2 of 2:
# the rows imported before the column (0011) existed.
#
# Until now an imported panel (a blood pressure) was a row whose value joins its components' values
# with " / ", followed by a row per component, and the export gave the components back to their panel
# by decrypting the values (records/selectors/export.py). The link is now a column. This migration sets
# it on the rows imported before, by the same rule the export used, restricted to imported rows (a
# value typed here is never taken for a panel): among one patient's imported observations of the same
# encounter, time, category and status, in key order, a row whose value is "a / b / ..." and the rows
# right after it whose values are a, b, ... in that order.

import logging

from django.db import migrations

logger = logging.getLogger(__name__)

SEPARATOR = " / "
BATCH_SIZE = 500


def link_components(apps, schema_editor):
    from healthcrypt.crypto import DecryptionError
    from records.db import mark_actor

    # The clinical tables' direct-change triggers (PostgreSQL) must see the application, not a DBA.
    mark_actor(None, job="migrate_observation_panel", using=schema_editor.connection.alias)
    Observation = apps.get_model("records", "Observation")
    manager = Observation._base_manager.using(schema_editor.connection.alias)
    imported = manager.exclude(source_id="")
    patients = imported.order_by().values_list("patient_id", flat=True).distinct()
    links = []
    unreadable = []
    for patient_id in patients.iterator():
        groups = {}
        for pk, row_uid, encounter_id, effective_at, category, status, value in (
            imported.filter(patient_id=patient_id)
            .order_by("pk")
            .values_list("pk", "row_uid", "encounter_id", "effective_at", "category", "status", "value")
            .iterator()
        ):
            try:
                plain = value.open(row_uid=row_uid, pk=pk)
            except DecryptionError:
                # A value that does not open here (copied from another row, a key withdrawn) is
                # nobody's panel or part: left unlinked, named by its key for the operator.
                unreadable.append(pk)
                plain = None
            key = (encounter_id, effective_at, category, status)
            groups.setdefault(key, []).append((pk, row_uid, plain))
        for group in groups.values():
            taken = set()
            for index, (pk, _, value) in enumerate(group):
                if pk in taken or value is None or SEPARATOR not in value:
                    continue
                parts = value.split(SEPARATOR)
                following = group[index + 1 : index + 1 + len(parts)]
                if len(following) == len(parts) and all(
                    other not in taken and other_value == part
                    for (other, _, other_value), part in zip(following, parts)
                ):
                    taken.update(other for other, _, _ in following)
                    links.extend(
                        Observation(pk=other, row_uid=row_uid, panel_id=pk) for other, row_uid, _ in following
                    )
        if len(links) >= BATCH_SIZE:
            manager.bulk_update(links, ["panel"])
            links = []
    if links:
        manager.bulk_update(links, ["panel"])
    if unreadable:
        logger.warning(
            "records 0012: %d imported observations did not decrypt and were left unlinked (ids %s)",
            len(unreadable),
            ", ".join(str(pk) for pk in unreadable[:50]),
        )


class Migration(migrations.Migration):

    # A migration of its own: on PostgreSQL, the UPDATEs' deferred trigger events would stop the
    # column's ALTER TABLE (its foreign key is added at the end of its migration) in the same transaction.
    dependencies = [
        ('records', '0011_observation_panel'),
    ]

    operations = [
        migrations.RunPython(link_components, migrations.RunPython.noop, elidable=False),
    ]
