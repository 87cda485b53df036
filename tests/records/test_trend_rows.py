"""The chart's trend lines read the newest vital signs beyond the table's page; those readings are opened
only as far as the lines need them (value, flag, sign), not every encrypted value of the row (issue 11)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import User
from healthcrypt import fields
from records.models import Observation
from records.selectors import OBSERVATIONS_PER_PAGE
from records.services import observation_record
from tests.records.conftest import Ward

pytestmark = pytest.mark.django_db


def test_readings_off_the_page_open_only_what_the_trend_lines_show(
    ward: Ward,
    nurse: User,
    physician: User,
    client_for: Callable[[User], Client],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    readings = OBSERVATIONS_PER_PAGE + 20
    for i in range(readings):
        observation_record(
            actor=nurse,
            patient_id=ward.treated.pk,
            category=Observation.Category.VITAL_SIGNS,
            display="Heart rate",
            value=str(60 + i % 30),
            unit="/min",
            loinc_code="8867-4",
        )
    opened: Counter[str] = Counter()
    real_open = fields.Sealed._open

    def counting(self: fields.Sealed, row: str | None, pk: Any) -> Any:
        if self._plaintext is fields._UNOPENED:
            opened[self.field.context] += 1
        return real_open(self, row, pk)

    monkeypatch.setattr(fields.Sealed, "_open", counting)
    chart = client_for(physician).get(reverse("records:chart", args=[ward.treated.pk])).context["chart"]
    [heart_rate] = chart.vital_trends
    assert len(heart_rate.readings) == 30  # TREND_POINTS, newest
    assert (heart_rate.label, heart_rate.unit) == ("Heart rate", "/min")
    # Every reading's value and sign, for the lines; name, unit and range only for the rows the table shows.
    assert opened["records.Observation.value"] == readings
    assert opened["records.Observation.loinc_code"] == readings
    for shown_only_in_the_table in ("display", "unit", "reference_range"):
        assert opened[f"records.Observation.{shown_only_in_the_table}"] == OBSERVATIONS_PER_PAGE
