# Surname search: a blind index of the normalised given name, and the surname index recomputed with
# the same normalisation (records.crypto.normalise_name: accents, case, apostrophes, hyphens).

from django.db import migrations, models

from records.db import marked_migration

BATCH_SIZE = 500


def reindex_names(apps, schema_editor):
    # The indexes are HMACs under the blind-index key from settings: the same functions the services
    # use at save time, so a row indexed here and a row saved later agree.
    from records.crypto import family_name_index, given_name_index
    from records.db import mark_actor

    # The clinical tables' direct-change triggers (PostgreSQL) must see the application, not a DBA.
    mark_actor(None, job="migrate_name_indexes", using=schema_editor.connection.alias)
    Patient = apps.get_model("records", "Patient")
    manager = Patient._base_manager.using(schema_editor.connection.alias)
    last = 0
    while True:
        rows = list(
            manager.filter(pk__gt=last)
            .order_by("pk")
            .values_list("pk", "row_uid", "family_name", "given_name")[:BATCH_SIZE]
        )
        if not rows:
            return
        shells = []
        for pk, row_uid, family, given in rows:
            shell = Patient(pk=pk, row_uid=row_uid)
            shell.family_name_index = family_name_index(family.open(row_uid=row_uid, pk=pk))
            shell.given_name_index = given_name_index(given.open(row_uid=row_uid, pk=pk))
            shells.append(shell)
        manager.bulk_update(shells, ["family_name_index", "given_name_index"])
        last = rows[-1][0]


class Migration(migrations.Migration):

    dependencies = [
        ('records', '0006_coded_safety'),
        # The DDL recorder that copies the actor marker: this migration's ALTER TABLE seals as the
        # application's (marked_migration), on a fresh database and on one that has the guards.
        ('audit', '0007_marked_ddl'),
    ]

    operations = [
        marked_migration("records.0007_name_search_indexes"),
        migrations.AddField(
            model_name='patient',
            name='given_name_index',
            field=models.CharField(db_index=True, default='', editable=False, max_length=64),
        ),
        migrations.RunPython(reindex_names, migrations.RunPython.noop, elidable=False),
        marked_migration("records.0007_name_search_indexes"),  # backwards runs the operations in reverse
    ]
