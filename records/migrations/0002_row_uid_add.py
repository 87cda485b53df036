# Row identity, step 1 of 3: a nullable column (docs/decisions/0007-row-bound-ciphertext.md).
# Not AddField with default=uuid.uuid4: that would give every existing row the same value.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('records', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='allergy',
            name='row_uid',
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name='attachment',
            name='row_uid',
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name='clinicalnote',
            name='row_uid',
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name='condition',
            name='row_uid',
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name='encounter',
            name='row_uid',
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name='immunization',
            name='row_uid',
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name='medication',
            name='row_uid',
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name='medicationadministration',
            name='row_uid',
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name='observation',
            name='row_uid',
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name='order',
            name='row_uid',
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name='patient',
            name='row_uid',
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name='procedure',
            name='row_uid',
            field=models.UUIDField(editable=False, null=True),
        ),
        # Files stored so far are format 1 (bound to their storage name only): rotate_keys rewrites them.
        migrations.AddField(
            model_name='attachment',
            name='file_format',
            field=models.PositiveSmallIntegerField(default=1, editable=False),
            preserve_default=False,
        ),
    ]
