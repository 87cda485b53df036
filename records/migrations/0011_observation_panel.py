# Observation components point to their panel (records.models.Observation.panel), step 1 of 2: the
# column (0012 sets it on the rows imported before).

import django.db.models.deletion
from django.db import migrations, models

from records.db import marked_migration


class Migration(migrations.Migration):

    dependencies = [
        ('records', '0010_unique_import_source'),
    ]

    operations = [
        marked_migration("records.0011_observation_panel"),
        migrations.AddField(
            model_name='observation',
            name='panel',
            field=models.ForeignKey(blank=True, editable=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='components', to='records.observation'),
        ),
        marked_migration("records.0011_observation_panel"),  # backwards runs the operations in reverse
    ]
