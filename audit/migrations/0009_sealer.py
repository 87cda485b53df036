"""Events are written with a mac and sealed into their chain afterwards (audit/chain.py, audit/sealer.py).

Adds ``nonce`` and ``mac`` to every chained table, lets ``partition``/``seq`` be empty until a row is
sealed, indexes the unsealed rows, refuses a second row with the same mac (a copied event), and
reinstalls the guards: the append-only triggers now allow the sealer's one UPDATE of an unsealed row's
chain columns and nothing else (audit/guards.py). Rows sealed before keep an empty mac and are checked
as they were hashed ("v1"). Marked as the application's, so its DDL on the audit tables seals as
``system:migrate:audit.0009_sealer`` instead of alerting.
"""

from typing import Any

from django.db import migrations, models

from audit import guards
from records.db import marked_migration


def reinstall(apps: Any, schema_editor: Any) -> None:
    guards.reinstall(schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0008_appointment_guards"),
    ]

    operations = [
        marked_migration("audit.0009_sealer"),
        migrations.AddField(
            model_name="accessevent",
            name="mac",
            field=models.CharField(default="", editable=False, max_length=64),
        ),
        migrations.AddField(
            model_name="accessevent",
            name="nonce",
            field=models.CharField(default="", editable=False, max_length=24),
        ),
        migrations.AddField(
            model_name="autheventrecord",
            name="mac",
            field=models.CharField(default="", editable=False, max_length=64),
        ),
        migrations.AddField(
            model_name="autheventrecord",
            name="nonce",
            field=models.CharField(default="", editable=False, max_length=24),
        ),
        migrations.AddField(
            model_name="changeevent",
            name="mac",
            field=models.CharField(default="", editable=False, max_length=64),
        ),
        migrations.AddField(
            model_name="changeevent",
            name="nonce",
            field=models.CharField(default="", editable=False, max_length=24),
        ),
        migrations.AddField(
            model_name="directchangeseal",
            name="mac",
            field=models.CharField(default="", editable=False, max_length=64),
        ),
        migrations.AddField(
            model_name="directchangeseal",
            name="nonce",
            field=models.CharField(default="", editable=False, max_length=24),
        ),
        migrations.AlterField(
            model_name="accessevent",
            name="hash",
            field=models.CharField(default="", editable=False, max_length=64),
        ),
        migrations.AlterField(
            model_name="accessevent",
            name="partition",
            field=models.PositiveSmallIntegerField(editable=False, null=True),
        ),
        migrations.AlterField(
            model_name="accessevent",
            name="prev_hash",
            field=models.CharField(default="", editable=False, max_length=64),
        ),
        migrations.AlterField(
            model_name="accessevent",
            name="seq",
            field=models.BigIntegerField(editable=False, null=True),
        ),
        migrations.AlterField(
            model_name="autheventrecord",
            name="hash",
            field=models.CharField(default="", editable=False, max_length=64),
        ),
        migrations.AlterField(
            model_name="autheventrecord",
            name="partition",
            field=models.PositiveSmallIntegerField(editable=False, null=True),
        ),
        migrations.AlterField(
            model_name="autheventrecord",
            name="prev_hash",
            field=models.CharField(default="", editable=False, max_length=64),
        ),
        migrations.AlterField(
            model_name="autheventrecord",
            name="seq",
            field=models.BigIntegerField(editable=False, null=True),
        ),
        migrations.AlterField(
            model_name="changeevent",
            name="hash",
            field=models.CharField(default="", editable=False, max_length=64),
        ),
        migrations.AlterField(
            model_name="changeevent",
            name="partition",
            field=models.PositiveSmallIntegerField(editable=False, null=True),
        ),
        migrations.AlterField(
            model_name="changeevent",
            name="prev_hash",
            field=models.CharField(default="", editable=False, max_length=64),
        ),
        migrations.AlterField(
            model_name="changeevent",
            name="seq",
            field=models.BigIntegerField(editable=False, null=True),
        ),
        migrations.AlterField(
            model_name="directchangeseal",
            name="hash",
            field=models.CharField(default="", editable=False, max_length=64),
        ),
        migrations.AlterField(
            model_name="directchangeseal",
            name="partition",
            field=models.PositiveSmallIntegerField(editable=False, null=True),
        ),
        migrations.AlterField(
            model_name="directchangeseal",
            name="prev_hash",
            field=models.CharField(default="", editable=False, max_length=64),
        ),
        migrations.AlterField(
            model_name="directchangeseal",
            name="seq",
            field=models.BigIntegerField(editable=False, null=True),
        ),
        migrations.AddIndex(
            model_name="accessevent",
            index=models.Index(condition=models.Q(("hash", "")), fields=["id"], name="audit_access_unsealed"),
        ),
        migrations.AddIndex(
            model_name="autheventrecord",
            index=models.Index(condition=models.Q(("hash", "")), fields=["id"], name="audit_auth_unsealed"),
        ),
        migrations.AddIndex(
            model_name="changeevent",
            index=models.Index(condition=models.Q(("hash", "")), fields=["id"], name="audit_change_unsealed"),
        ),
        migrations.AddConstraint(
            model_name="accessevent",
            constraint=models.UniqueConstraint(
                condition=models.Q(("mac", ""), _negated=True), fields=("mac",), name="audit_access_mac_unique"
            ),
        ),
        migrations.AddConstraint(
            model_name="autheventrecord",
            constraint=models.UniqueConstraint(
                condition=models.Q(("mac", ""), _negated=True), fields=("mac",), name="audit_auth_mac_unique"
            ),
        ),
        migrations.AddConstraint(
            model_name="changeevent",
            constraint=models.UniqueConstraint(
                condition=models.Q(("mac", ""), _negated=True), fields=("mac",), name="audit_change_mac_unique"
            ),
        ),
        migrations.AddConstraint(
            model_name="directchangeseal",
            constraint=models.UniqueConstraint(
                condition=models.Q(("mac", ""), _negated=True), fields=("mac",), name="audit_direct_mac_unique"
            ),
        ),
        migrations.RunPython(reinstall, migrations.RunPython.noop),
        marked_migration("audit.0009_sealer"),
    ]
