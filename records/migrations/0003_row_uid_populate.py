# Row identity, step 2 of 3: one random UUID per existing row (healthcrypt/row_uids.py).

from django.db import migrations

from healthcrypt.row_uids import populate

MODELS = (
    "Allergy",
    "Attachment",
    "ClinicalNote",
    "Condition",
    "Encounter",
    "Immunization",
    "Medication",
    "MedicationAdministration",
    "Observation",
    "Order",
    "Patient",
    "Procedure",
)


def mark_application(alias: str) -> None:
    # The clinical tables' direct-change triggers (PostgreSQL) must see the application, not a DBA.
    from records.db import mark_actor

    mark_actor(None, job="migrate_row_uid")


assign = populate("records", MODELS, before=mark_application)


class Migration(migrations.Migration):

    dependencies = [
        ("records", "0002_row_uid_add"),
    ]

    operations = [
        migrations.RunPython(assign, migrations.RunPython.noop, elidable=False),
    ]
