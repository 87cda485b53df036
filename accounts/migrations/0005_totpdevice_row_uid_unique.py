# Row identity, step 3 of 3: every row has its own row_uid now; make it required and unique.

import uuid

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0004_totpdevice_row_uid_populate'),
    ]

    operations = [
        migrations.AlterField(
            model_name='totpdevice',
            name='row_uid',
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
    ]
