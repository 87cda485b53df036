"""PostgreSQL only: the package table is guarded like a clinical table. A package row written by the
application seals as the application's; one deleted straight in the database (which would let a
received package be imported again) is recorded and does not verify."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection

from audit.models import DirectChange, DirectChangeSeal
from audit.sealing import seal_direct_changes
from exchange.models import Package
from exchange.packages import seal_package
from exchange.partners.models import Partner
from tests.exchange.packages.conftest import TINY_BUNDLE

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the guards exist on PostgreSQL only"),
    pytest.mark.django_db(transaction=True),
]


def test_a_sealed_package_row_is_the_applications_and_a_direct_delete_is_seen(partner: Partner) -> None:
    seal_package(TINY_BUNDLE, partner)
    package = Package.objects.get()
    written = DirectChange.objects.get(table_name="exchange_package", row_id=package.pk, operation="INSERT")
    seal_direct_changes()
    assert DirectChangeSeal.objects.get(direct_change_id=written.pk).verified

    s = connection.settings_dict
    with psycopg.connect(dbname=s["NAME"], user=s["USER"], host=s["HOST"] or None, autocommit=True) as vendor:
        vendor.execute("DELETE FROM exchange_package WHERE id = %s", [package.pk])
    deleted = DirectChange.objects.get(table_name="exchange_package", row_id=package.pk, operation="DELETE")
    seal_direct_changes()
    assert not DirectChangeSeal.objects.get(direct_change_id=deleted.pk).verified
