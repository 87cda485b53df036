# Row identity, step 1 of 3: a nullable column (docs/decisions/0007-row-bound-ciphertext.md).
# Not AddField with default=uuid.uuid4: that would give every existing row the same value.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0002_recoverycodedevice_recoverycode_totpdevice'),
    ]

    operations = [
        migrations.AddField(
            model_name='totpdevice',
            name='row_uid',
            field=models.UUIDField(editable=False, null=True),
        ),
    ]
