# Row identity, step 2 of 3: one random UUID per existing TOTP device (healthcrypt/row_uids.py).

from django.db import migrations

from healthcrypt.row_uids import populate

assign = populate("accounts", ("TOTPDevice",))


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0003_totpdevice_row_uid_add"),
    ]

    operations = [
        migrations.RunPython(assign, migrations.RunPython.noop, elidable=False),
    ]
