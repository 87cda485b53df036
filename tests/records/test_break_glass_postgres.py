"""PostgreSQL only: creating and ending a grant go through the write path, so the guarded table's
change rows carry the application's verified marker (no direct-database alert for a legitimate grant)."""

from __future__ import annotations

import pytest
from django.db import connection

from accounts.models import User
from audit.models import DirectChange, DirectChangeSeal
from audit.sealing import seal_direct_changes
from records import breakglass
from tests.accounts.helpers import current_code
from tests.conftest import totp_device
from tests.factories import PatientFactory

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the guards exist on PostgreSQL only"),
    pytest.mark.django_db(transaction=True),
]


def test_grant_and_its_end_carry_a_verified_marker(ems: User) -> None:
    patient = PatientFactory()
    grant = breakglass.break_glass_grant(
        actor=ems,
        patient_id=patient.pk,
        reason="emergency_treatment",
        explanation="Unconscious at the scene of a fall",
        code=current_code(totp_device(ems)),
    )
    breakglass.break_glass_end(actor=ems, grant_id=grant.pk)
    changes = list(DirectChange.objects.filter(table_name="records_breakglassgrant", row_id=grant.pk).order_by("id"))
    assert [c.operation for c in changes] == ["INSERT", "UPDATE"]
    for change in changes:
        assert change.actor_marker.startswith(f"v1:user:{ems.pk}:{change.txid}:")
    seal_direct_changes()
    seals = DirectChangeSeal.objects.filter(direct_change_id__in=[c.pk for c in changes])
    assert [(s.verified, s.actor) for s in seals] == [(True, f"user:{ems.pk}")] * 2
