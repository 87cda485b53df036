from __future__ import annotations

import json
import re
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import RequestFactory

from accounts.models import Department, User
from accounts.roles import Role
from audit.models import ChangeEvent
from records.models import (
    SCHEDULE_HOURS,
    CareAssignment,
    Immunization,
    Medication,
    MedicationAdministration,
    Patient,
    Procedure,
)

pytestmark = pytest.mark.django_db


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", "--force", "--patients", "24", *args, stdout=out)
    return out.getvalue()


def test_refuses_with_debug_off_unless_forced() -> None:
    with pytest.raises(CommandError, match="refuses to run with DEBUG off"):
        call_command("seed_demo", stdout=StringIO())
    assert not User.objects.exists()


def test_refuses_a_silly_patient_count() -> None:
    with pytest.raises(CommandError, match="between 1 and 10000"):
        call_command("seed_demo", "--force", "--patients", "0", stdout=StringIO())


def test_creates_one_user_per_role_named_after_it() -> None:
    seed()
    for role in Role:
        assert User.objects.get(username=role.value).role == role
    assert Department.objects.filter(kind=Department.Kind.RADIOLOGY).exists()


def test_second_run_creates_nothing_new_and_prints_the_same_credentials() -> None:
    first = json.loads(seed("--json"))
    counts = (User.objects.count(), Patient.objects.count(), CareAssignment.objects.count(), Department.objects.count())
    second = json.loads(seed("--json"))
    assert set(second["created"].values()) == {0}
    assert first["created"]["observations"] > 0
    assert first["created"]["images"] > 0
    assert (
        User.objects.count(),
        Patient.objects.count(),
        CareAssignment.objects.count(),
        Department.objects.count(),
    ) == counts
    assert first["users"] == second["users"]
    assert first["created"]["patients"] == 24


def test_printed_credentials_sign_in() -> None:
    output = json.loads(seed("--json"))
    for row in output["users"]:
        request = RequestFactory().post("/accounts/login/")
        user = authenticate(request, username=row["username"], password=row["password"])
        assert user is not None, row["username"]


def test_text_output_lists_every_demo_user() -> None:
    text = seed()
    for role in Role:
        assert role.value in text


def test_patients_are_deterministic_and_stored_encrypted() -> None:
    seed()
    first = Patient.objects.order_by("id").first()
    names = (first.given_name, first.family_name)
    with connection.cursor() as cursor:
        cursor.execute("SELECT given_name, family_name FROM records_patient WHERE id = %s", [first.pk])
        raw = " ".join(cursor.fetchone())
    assert names[0] not in raw
    assert names[1] not in raw


def test_some_patients_have_a_care_team_and_some_do_not() -> None:
    seed()
    physician = User.objects.get(username="physician")
    assigned = CareAssignment.objects.filter(staff=physician).count()
    assert 0 < assigned < Patient.objects.count()
    assert Patient.objects.filter(care_assignments__isnull=True).exists()


def test_patient_demo_user_is_linked_to_a_patient_record() -> None:
    seed()
    assert Patient.objects.filter(portal_user__username="patient").count() == 1


def test_printed_demo_code_hint_is_a_command_that_runs(settings: Any) -> None:
    text = seed()
    [hint] = re.findall(r"`([^`]*demo_code USERNAME)`", text)
    assert hint == "DEBUG=1 .venv/bin/python manage.py demo_code USERNAME"
    # Without DEBUG=1 the command refuses, which is why the hint sets it; with it, it prints a code.
    settings.DEBUG = False
    with pytest.raises(CommandError):
        call_command("demo_code", "physician", stdout=StringIO())
    settings.DEBUG = True
    out = StringIO()
    call_command("demo_code", "physician", stdout=out)
    assert re.match(r"\d{6} ", out.getvalue())


def test_books_todays_clinic_once_and_checks_the_first_patient_in() -> None:
    from django.utils import timezone

    from records.models import Appointment

    first = json.loads(seed("--json"))
    today = Appointment.objects.filter(starts_at__date=timezone.localdate())
    assert first["created"]["appointments"] == today.count()
    if today.exists():  # none are left to book in the last minutes of the day
        assert today.filter(status=Appointment.Status.CHECKED_IN, encounter__isnull=False).count() == 1
    assert json.loads(seed("--json"))["created"]["appointments"] == 0
    # Every demo prescription has a schedule, so the nurses' due medications have something to show.
    frequencies = {m.frequency for m in Medication.objects.all()}
    assert frequencies
    assert "" not in frequencies
    assert None not in frequencies


def test_every_chart_section_has_demo_data_written_through_the_services() -> None:
    """Doses given, past procedures and vaccinations: the chart's sections are not empty in the demo
    (nor in the load test, which seeds it), and each row came with its change event."""
    created = json.loads(seed("--json"))["created"]
    doses, procedures, immunizations = (
        MedicationAdministration.objects.all(),
        Procedure.objects.all(),
        Immunization.objects.all(),
    )
    assert (created["doses"], created["procedures"], created["immunizations"]) == (
        doses.count(),
        procedures.count(),
        immunizations.count(),
    )
    assert doses.exists()
    assert procedures.exists()
    assert immunizations.exists()
    # A nurse gave them, and some scheduled prescriptions are still waiting for their first dose.
    assert set(doses.values_list("administered_by__role", flat=True)) == {Role.NURSE}
    scheduled = [m for m in Medication.objects.all() if m.frequency in SCHEDULE_HOURS]
    given = set(doses.values_list("medication_id", flat=True))
    assert any(m.pk not in given for m in scheduled)
    # Records from elsewhere: coded, imported by the front desk with their change events.
    assert {p.code for p in procedures} <= {"73761001", "80146002", "38102005", "29303009"}
    assert {i.code for i in immunizations} <= {"140", "113", "133"}
    imported = ChangeEvent.objects.filter(action="import", object_type__in=["Procedure", "Immunization"])
    assert imported.count() == procedures.count() + immunizations.count()
    assert set(imported.values_list("actor_role", flat=True)) == {Role.FRONT_DESK}
    assert ChangeEvent.objects.filter(action="administer").count() == doses.count()
    # Nothing of it was stored in the clear.
    with connection.cursor() as cursor:
        cursor.execute("SELECT display FROM records_immunization")
        stored = " ".join(row[0] for row in cursor.fetchall())
    assert "Influenza" not in stored
