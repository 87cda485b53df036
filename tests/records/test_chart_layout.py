"""The chart at tablet width (issue 10): sections with anchors and a section nav, entry forms in their
sections (vitals first), vital signs grouped by recording time with flags in words, results apart, and
a trend per vital sign drawn from the audited chart read's own data."""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from audit.models import AccessEvent
from records.models import Observation
from records.selectors import TREND_POINTS, ObservationRow, vital_trends, vitals_table
from records.services import observation_record
from tests.factories import assign
from tests.records.conftest import Ward

pytestmark = pytest.mark.django_db


def _chart(client: Client, ward: Ward, query: str = "") -> Any:
    response = client.get(reverse("records:chart", args=[ward.treated.pk]) + query)
    assert response.status_code == 200
    return response


def _vitals(client: Client, patient_id: int, **values: str) -> None:
    response = client.post(reverse("records:vitals_new", args=[patient_id]), values)
    assert response.status_code == 302, response.content


def _section(html: str, key: str) -> str:
    """The HTML of one chart section, from its opening tag to its closing one."""
    start = html.index(f'id="section-{key}"')
    return html[start : html.index("</section>", start)]


def _trend_json(html: str) -> dict[str, Any]:
    match = re.search(r'<script id="vital-trends-data" type="application/json">(.*?)</script>', html, re.S)
    assert match is not None
    return json.loads(match.group(1))  # type: ignore[no-any-return]


# --- Sections and the section nav ---------------------------------------------------------------------


def test_nurse_chart_has_anchored_sections_and_a_nav_to_each(
    ward: Ward, nurse: User, client_for: Callable[[User], Client]
) -> None:
    response = _chart(client_for(nurse), ward)
    html = response.content.decode()
    keys = [s.key for s in response.context["sections"]]
    assert keys[:5] == ["observations", "medications", "problems", "orders", "notes"]
    nav = html[html.index('data-testid="chart-nav"') : html.index("</nav>", html.index('data-testid="chart-nav"'))]
    for key in keys:
        assert f'id="section-{key}"' in html
        assert f'href="#section-{key}"' in nav
    # The way to record vitals is in the nav itself, and its form is the first form of the page body.
    assert 'href="#record-vitals"' in nav
    vitals_form = html.index(reverse("records:vitals_new", args=[ward.treated.pk]))
    assert 'id="record-vitals"' in _section(html, "observations")
    assert vitals_form < html.index('id="section-medications"')
    for other in ("note_new", "allergy_new"):
        assert vitals_form < html.index(reverse(f"records:{other}", args=[ward.treated.pk]))


def test_physician_forms_sit_in_their_own_sections(
    ward: Ward, physician: User, client_for: Callable[[User], Client]
) -> None:
    html = _chart(client_for(physician), ward).content.decode()
    pid = ward.treated.pk
    assert reverse("records:prescription_new", args=[pid]) in _section(html, "medications")
    assert reverse("records:order_new", args=[pid]) in _section(html, "orders")
    assert reverse("records:note_new", args=[pid]) in _section(html, "notes")
    assert reverse("records:allergy_new", args=[pid]) in _section(html, "problems")
    assert reverse("records:condition_new", args=[pid]) in _section(html, "problems")
    assert reverse("records:vitals_new", args=[pid]) in _section(html, "observations")


def test_sections_without_data_or_a_form_are_left_out_of_page_and_nav(
    ward: Ward, nurse: User, client_for: Callable[[User], Client]
) -> None:
    response = _chart(client_for(nurse), ward)
    html = response.content.decode()
    assert 'id="section-images"' not in html
    assert 'href="#section-images"' not in html
    assert 'id="section-history"' not in html


def test_the_chart_page_carries_no_inline_script_or_style(
    ward: Ward, nurse: User, client_for: Callable[[User], Client]
) -> None:
    _vitals(client_for(nurse), ward.treated.pk, heart_rate="80")
    html = _chart(client_for(nurse), ward).content.decode()
    scripts = re.findall(r"<script([^>]*)>", html)
    assert scripts, "the trend scripts are on the page"
    # Every script is a file of this origin or the JSON data island: the CSP allows nothing else.
    assert all("src=" in attrs or 'type="application/json"' in attrs for attrs in scripts)
    assert "style=" not in html
    assert "<style" not in html


# --- Vital signs grouped by time, flags in words ------------------------------------------------------


def test_one_row_per_recording_time_one_column_per_vital_sign(
    ward: Ward, nurse: User, client_for: Callable[[User], Client]
) -> None:
    client = client_for(nurse)
    _vitals(client, ward.treated.pk, heart_rate="72", systolic="120", diastolic="80", spo2="98")
    _vitals(client, ward.treated.pk, heart_rate="88", temperature="37.2")
    table = _chart(client, ward).context["observation_table"]
    assert [c.label for c in table.columns][:5] == [
        "Heart rate",
        "Systolic blood pressure",
        "Diastolic blood pressure",
        "Body temperature",
        "Oxygen saturation",
    ]
    assert len(table.sets) == 2  # six observations, two recordings
    newest, oldest = table.sets
    assert newest.effective_at > oldest.effective_at
    assert [c.value if c else None for c in newest.cells] == ["88", None, None, "37.2", None]
    assert [c.value if c else None for c in oldest.cells] == ["72", "120", "80", None, "98"]
    assert table.results == ()


def test_a_flagged_vital_shows_its_interpretation_in_words(
    ward: Ward, nurse: User, client_for: Callable[[User], Client]
) -> None:
    client = client_for(nurse)
    _vitals(client, ward.treated.pk, heart_rate="150", spo2="97")
    _vitals(client, ward.treated.pk, heart_rate="200")
    vitals = _section(_chart(client, ward).content.decode(), "observations")
    table = vitals[vitals.index('data-testid="vitals-table"') : vitals.index("</table>")]
    # Text, not only colour: the code and its word, in the vitals table's cell.
    assert re.search(r'<span class="flag" data-testid="result-flag">H <span class="flag-word">high</span>', table)
    assert re.search(
        r'<span class="flag flag-critical" data-testid="result-flag">HH <span class="flag-word">critical high</span>',
        table,
    )
    assert table.count('data-testid="result-flag"') == 2  # the normal SpO2 carries no flag


def test_laboratory_results_have_their_own_table(
    ward: Ward, nurse: User, lab: User, physician: User, client_for: Callable[[User], Client]
) -> None:
    _vitals(client_for(nurse), ward.treated.pk, heart_rate="70")
    observation_record(
        actor=lab,
        patient_id=ward.treated.pk,
        category="laboratory",
        display="Potassium",
        value="6.9",
        unit="mmol/L",
        loinc_code="2823-3",
        order_id=ward.lab_order.pk,
    )
    response = _chart(client_for(physician), ward)
    table = response.context["observation_table"]
    assert [r.display for r in table.results] == ["Potassium"]
    assert [c.value for s in table.sets for c in s.cells if c] == ["70"]
    html = response.content.decode()
    results = html[html.index('data-testid="results-table"') :]
    assert "Potassium" in results[: results.index("</table>")]
    # The lab value is no vital sign: it has no trend line.
    assert [s["label"] for s in _trend_json(html)["series"]] == ["Heart rate"]


def test_imported_vital_signs_of_other_kinds_get_their_own_column() -> None:
    at = timezone.now()

    def row(code: str, display: str, value: str) -> ObservationRow:
        return ObservationRow(1, "Vital signs", display, value, "kg", code, at, "N. Urse", None)

    table = vitals_table([row("8867-4", "Heart rate", "70"), row("29463-7", "Body weight", "81")])
    assert [c.label for c in table.columns] == [
        "Heart rate",
        "Systolic blood pressure",
        "Diastolic blood pressure",
        "Body temperature",
        "Oxygen saturation",
        "Body weight",
    ]
    assert [c.value if c else None for c in table.sets[0].cells] == ["70", None, None, None, None, "81"]


def test_trends_keep_the_newest_numeric_readings_oldest_first() -> None:
    start = timezone.now()
    rows = [
        ObservationRow(
            i, "Vital signs", "Heart rate", str(60 + i), "/min", "8867-4", start - datetime.timedelta(hours=i), "", None
        )
        for i in range(TREND_POINTS + 5)
    ]
    rows.insert(1, ObservationRow(99, "Vital signs", "Heart rate", "irregular", "/min", "8867-4", start, "", None))
    (trend,) = vital_trends(rows)
    assert len(trend.readings) == TREND_POINTS
    assert trend.latest.value == "60"
    assert trend.readings[0].value == str(60 + TREND_POINTS - 1)
    assert (trend.low, trend.high) == (60.0, 100.0)


# --- The trend data: from the audited read, this patient's vitals only ---------------------------------


def test_trend_data_holds_only_this_patients_vitals_and_no_identifiers(
    ward: Ward, nurse: User, client_for: Callable[[User], Client]
) -> None:
    client = client_for(nurse)
    assign(nurse, ward.other, "primary_nurse")
    _vitals(client, ward.treated.pk, heart_rate="71")
    _vitals(client, ward.treated.pk, heart_rate="150")
    _vitals(client, ward.other.pk, heart_rate="99", spo2="91")
    before = AccessEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    html = _chart(client, ward).content.decode()
    data = _trend_json(html)
    assert [(s["label"], [p["value"] for p in s["points"]]) for s in data["series"]] == [("Heart rate", [71.0, 150.0])]
    assert [p["flag"] for p in data["series"][0]["points"]] == ["N", "H"]
    raw = json.dumps(data)
    for identifier in (
        ward.treated.family_name,
        ward.treated.given_name,
        ward.treated.mrn,
        str(ward.treated.birth_date),
    ):
        assert identifier not in raw
    # One recorded access for the whole page, trends included (no second read, no extra endpoint).
    events = AccessEvent.objects.filter(pk__gt=before)
    assert {(e.patient_id, e.action) for e in events} == {(ward.treated.pk, "view")}


def test_the_chart_query_count_does_not_grow_with_observations(
    ward: Ward, nurse: User, client_for: Callable[[User], Client]
) -> None:
    client = client_for(nurse)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            _chart(client, ward)
        return len(captured)

    def add(n: int) -> None:
        for i in range(n):
            observation_record(
                actor=nurse,
                patient_id=ward.treated.pk,
                category=Observation.Category.VITAL_SIGNS,
                display="Heart rate",
                value=str(60 + i % 50),
                unit="/min",
                loinc_code="8867-4",
            )

    add(3)
    queries()  # the first request of a session does more
    few = queries()
    add(250)
    assert queries() == few


def test_roles_without_a_form_get_no_entry_point_for_it(
    ward: Ward, nurse: User, client_for: Callable[[User], Client]
) -> None:
    html = _chart(client_for(nurse), ward).content.decode()
    pid = ward.treated.pk
    # Nurses neither prescribe, order nor diagnose: those forms are absent, not just hidden.
    for name in ("prescription_new", "order_new", "condition_new"):
        assert f'action="{reverse(f"records:{name}", args=[pid])}"' not in html
