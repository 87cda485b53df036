"""After the demo hospital is seeded and toured by every role, no audit table holds a patient value."""

from __future__ import annotations

import json
from collections.abc import Callable
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client, override_settings
from django.urls import reverse

from accounts.models import User
from records.models import Attachment, Order, Patient

pytestmark = pytest.mark.django_db

AUDIT_TABLES = (
    "audit_accessevent",
    "audit_changeevent",
    "audit_autheventrecord",
    "audit_directchange",
    "auditlog_logentry",
    "axes_accessattempt",
    "axes_accessfailurelog",
)


def test_seeded_and_toured_hospital_leaves_no_patient_value_in_audit_tables(
    client_for: Callable[[User], Client], tmp_path: Path
) -> None:
    with override_settings(MEDIA_ROOT=tmp_path):
        call_command("seed_demo", "--force", "--patients", "16", stdout=StringIO())
        patients = list(Patient.objects.all())
        users = {u.username: u for u in User.objects.all()}
        physician = client_for(users["physician"])
        for patient in patients[:6]:
            physician.get(reverse("records:chart", args=[patient.pk]))
        physician.get(reverse("records:my_patients"))
        physician.get(reverse("records:search"), {"mrn": patients[0].mrn})
        physician.get(
            reverse("records:search"),
            {"family_name": patients[1].family_name, "birth_date": patients[1].birth_date.isoformat()},
        )
        client_for(users["nurse"]).get(reverse("records:chart", args=[patients[0].pk]))
        client_for(users["front_desk"]).get(reverse("records:registration_detail", args=[patients[2].pk]))
        lab = client_for(users["lab"])
        for order in Order.objects.filter(kind="lab", status__in=Order.OPEN_STATUSES)[:3]:
            lab.get(reverse("records:order_detail", args=[order.pk]))
        for attachment in Attachment.objects.all()[:2]:
            response = physician.get(reverse("records:attachment_download", args=[attachment.pk]))
            if response.status_code == 200:
                b"".join(response.streaming_content)
        client_for(users["patient"]).get(reverse("records:my_record"))
        Client().post(
            reverse("accounts:login"), {"username": patients[3].family_name, "password": "x"}
        )  # a name typed as a username

    values = set()
    for p in patients:
        values |= {p.given_name, p.family_name, p.mrn, p.birth_date.isoformat(), p.phone, p.email, p.address_line}
    values = {v for v in values if v and len(v) >= 4}
    with connection.cursor() as cursor:
        for table in AUDIT_TABLES:
            cursor.execute(f"SELECT * FROM {table}")  # noqa: S608 - fixed table names
            dump = json.dumps([[str(v) for v in row] for row in cursor.fetchall()])
            leaked = sorted(v for v in values if v in dump)
            assert leaked == [], (table, leaked[:5])
