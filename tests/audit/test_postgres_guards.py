"""PostgreSQL only: direct changes to clinical rows are caught, and the application role cannot rewrite history."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.urls import reverse

from accounts.models import User
from audit.dbrole import grant_statements
from audit.models import AccessEvent, DirectChange
from records.services import note_write
from tests.factories import PatientFactory

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="triggers of this kind exist on PostgreSQL only"
)


def raw_connection() -> psycopg.Connection:
    s = connection.settings_dict
    return psycopg.connect(
        dbname=s["NAME"],
        user=s["USER"],
        host=s["HOST"] or None,
        port=s["PORT"] or None,
        password=s["PASSWORD"] or None,
        autocommit=True,
    )


@pytest.mark.django_db(transaction=True)
def test_update_through_a_raw_connection_is_recorded_as_a_direct_change(physician: User) -> None:
    patient = PatientFactory()
    with raw_connection() as conn:
        conn.execute("UPDATE records_patient SET is_confidential = true WHERE id = %s", [patient.pk])
    direct = DirectChange.objects.filter(table_name="records_patient", operation="UPDATE", row_id=patient.pk)
    assert direct.count() == 1
    change = direct.get()
    assert change.is_direct
    assert change.actor_marker == ""


@pytest.mark.django_db(transaction=True)
def test_application_writes_carry_the_actor_marker(physician: User) -> None:
    patient = PatientFactory()
    from tests.factories import assign

    assign(physician, patient)
    note = note_write(actor=physician, patient_id=patient.pk, kind="progress", text="Fine.")
    marked = DirectChange.objects.get(table_name="records_clinicalnote", row_id=note.pk)
    assert marked.actor_marker == f"user:{physician.pk}"
    assert not marked.is_direct
    assert not DirectChange.objects.filter(actor_marker="").exists()


@pytest.mark.django_db
def test_application_role_may_insert_but_not_rewrite_audit_rows(
    physician: User, client_for: Callable[[User], Client]
) -> None:
    client_for(physician).get(reverse("accounts:dashboard"))
    AccessEvent.objects.exists()
    with connection.cursor() as cursor:
        cursor.execute("DROP ROLE IF EXISTS hc_test_app")
        cursor.execute("CREATE ROLE hc_test_app")
        for statement in grant_statements("hc_test_app"):
            cursor.execute(statement)
        cursor.execute("SET ROLE hc_test_app")
        try:
            cursor.execute("SELECT count(*) FROM audit_accessevent")
            for statement in (
                "UPDATE audit_autheventrecord SET username = 'x'",
                "DELETE FROM audit_autheventrecord",
                "TRUNCATE audit_accessevent",
            ):
                with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic():
                    cursor.execute(statement)
        finally:
            cursor.execute("RESET ROLE")


@pytest.mark.django_db
def test_pgaudit_logs_direct_reads_where_it_is_installed() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('shared_preload_libraries')")
        (preloaded,) = cursor.fetchone()
        if "pgaudit" not in preloaded:
            pytest.skip(
                "pgaudit is not loaded on this server (docs/operations/database-roles.md says how to enable it)"
            )
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pgaudit")
        cursor.execute("SET pgaudit.log = 'read'")
        cursor.execute("SELECT count(*) FROM records_patient")
        cursor.execute("SHOW pgaudit.log")
        assert cursor.fetchone()[0] == "read"
