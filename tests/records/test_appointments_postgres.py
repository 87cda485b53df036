"""PostgreSQL only: the appointment table is guarded like every clinical table. Booking and check-in
through the write path carry the application's verified marker; a raw UPDATE is a direct change."""

from __future__ import annotations

import datetime

import pytest
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Department, User
from audit.models import DirectChange, DirectChangeSeal
from audit.sealing import seal_direct_changes
from records.services import appointment_book, appointment_check_in
from tests.factories import PatientFactory

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the guards exist on PostgreSQL only"),
    pytest.mark.django_db(transaction=True),
]


def test_booking_and_check_in_are_verified_and_a_raw_update_is_not(front_desk: User) -> None:
    clinic = Department.objects.create(code="pg-clinic", name="PG clinic", kind=Department.Kind.OUTPATIENT)
    patient = PatientFactory()
    appointment = appointment_book(
        actor=front_desk,
        patient_id=patient.pk,
        department_id=clinic.pk,
        starts_at=timezone.now() + datetime.timedelta(hours=1),
        duration_minutes=15,
    )
    appointment_check_in(actor=front_desk, patient_id=patient.pk, appointment_id=appointment.pk)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE records_appointment SET duration_minutes = 90 WHERE id = %s", [appointment.pk])
    changes = list(DirectChange.objects.filter(table_name="records_appointment", row_id=appointment.pk).order_by("id"))
    assert [c.operation for c in changes] == ["INSERT", "UPDATE", "UPDATE"]
    seal_direct_changes()
    verified = dict(
        DirectChangeSeal.objects.filter(direct_change_id__in=[c.pk for c in changes]).values_list(
            "direct_change_id", "verified"
        )
    )
    assert [verified[c.pk] for c in changes] == [True, True, False]
