"""The load test's baseline serves the same pages as the subject (issue 11: "the same pages from
plaintext rows with policy and audit switched off"), so the throughput ratio compares like with like.

One demo hospital, mirrored as bench/load/seed.py's ``mirror`` does for the load test; each role's
dashboard and chart are fetched from the real views and from the baseline's, and must show the same
panels (templates, in order), the same headings (with their counts) and the same number of rows.
The baseline's tables are created inside the test's transaction (the test settings do not install
the baseline app, and must not: tests/bench/test_baseline_settings.py), so they vanish with it.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from io import StringIO

import pytest
from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client, override_settings
from django.urls import clear_url_caches, reverse
from django.utils import timezone

from accounts.models import User
from records.db import mark_actor
from records.models import Attachment, BreakGlassGrant, CareAssignment, Immunization, Observation, Order, Procedure
from records.services import (
    medication_administer,
    medication_prescribe,
    observation_record,
    order_complete,
    order_place,
)
from tests.conftest import make_step_up_stale, sign_in

pytestmark = pytest.mark.django_db

BASELINE_APP = "bench.load.baseline.apps.BaselineConfig"
ROLES = ("physician", "nurse", "front_desk", "lab")


def _create_tables() -> None:
    """CREATE TABLE for the baseline's models in the open transaction (SQLite's schema editor refuses
    to run inside one, so its SQL is collected and executed by hand; PostgreSQL takes it either way)."""
    editor = connection.SchemaEditorClass(connection, collect_sql=True)
    editor.deferred_sql = []
    for model in apps.get_app_config("loadbaseline").get_models():
        editor.create_model(model)
    with connection.cursor() as cursor:
        for statement in [*editor.collected_sql, *map(str, editor.deferred_sql)]:
            cursor.execute(statement.rstrip(";"))


@pytest.fixture
def hospital() -> Iterator[None]:
    """seed_demo's hospital plus, on the patient the tests chart, one row of every section whatever the
    seed drew for them (doses given and due, a procedure, an immunization, a critical result, an
    emergency grant), mirrored into the baseline's plaintext tables."""
    call_command("seed_demo", "--force", "--patients", "12", stdout=StringIO())
    physician, nurse = User.objects.get(username="physician"), User.objects.get(username="nurse")
    patient_id = _charted_patient()
    medication = medication_prescribe(actor=physician, patient_id=patient_id, display="Paracetamol", dosage="1 g")
    medication_administer(actor=nurse, patient_id=patient_id, medication_id=medication.pk, dose="1 g")
    # A single dose not given yet: due on the nurse's ward list.
    medication_prescribe(actor=physician, patient_id=patient_id, display="Heparin", dosage="5000 IU", frequency="once")
    # A critical laboratory result of the physician's order, completed: the physician's result panels.
    lab = User.objects.get(username="lab")
    order = order_place(
        actor=physician, patient_id=patient_id, kind=Order.Kind.LAB, department=lab.department, description="Glucose"
    )
    observation_record(
        actor=lab,
        patient_id=patient_id,
        category=Observation.Category.LABORATORY,
        display="Glucose",
        value="600",
        unit="mg/dL",
        loinc_code="2345-7",
        order_id=order.pk,
    )
    order_complete(actor=lab, order_id=order.pk)
    with transaction.atomic():
        mark_actor(None, job="test")
        Procedure.objects.create(patient_id=patient_id, display="Appendectomy", performed_at=timezone.now())
        Immunization.objects.create(patient_id=patient_id, display="Influenza vaccine", occurred_at=timezone.now())
        # An emergency grant in force: the physician's "Emergency access" panel lists it.
        BreakGlassGrant.objects.create(
            user=physician,
            patient_id=patient_id,
            reason=BreakGlassGrant.Reason.OTHER,
            explanation="test",
            granted_at=timezone.now(),
            expires_at=timezone.now() + datetime.timedelta(hours=1),
        )
    with override_settings(INSTALLED_APPS=[*settings.INSTALLED_APPS, BASELINE_APP]):
        _create_tables()
        from bench.load.seed import mirror

        mirror()
        yield


def _charted_patient() -> int:
    """A patient on the demo physician's and nurse's care teams (both may open the chart), with an
    image when seed_demo gave one to such a patient."""
    physician, nurse = User.objects.get(username="physician"), User.objects.get(username="nurse")
    physicians = set(CareAssignment.objects.filter(staff=physician).values_list("patient_id", flat=True))
    both = physicians & set(CareAssignment.objects.filter(staff=nurse).values_list("patient_id", flat=True))
    with_images = both & set(Attachment.objects.values_list("patient_id", flat=True))
    return min(with_images or both)


def _page(client: Client, url: str, *, baseline: bool) -> tuple[list[str], list[str], dict[str, int]]:
    """The panel and section templates rendered, the headings (h2/h3 text) and the count of list
    items and table rows of one GET, from the subject's views or the baseline's."""
    urlconf = "bench.load.baseline.urls" if baseline else settings.ROOT_URLCONF
    with override_settings(ROOT_URLCONF=urlconf):
        clear_url_caches()
        response = client.get(url)
    clear_url_caches()
    assert response.status_code == 200
    templates = [t.name for t in response.templates if t.name and "/panels/" in t.name]
    html = response.content.decode()
    html = html[html.index("<main") :]
    headings = [
        re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", h)).strip()
        for h in re.findall(r"<h[23][^>]*>(.*?)</h[23]>", html, re.S)
    ]
    rows = {tag: len(re.findall(rf"<{tag}[\s>]", html)) for tag in ("li", "tr", "section")}
    return templates, headings, rows


@pytest.mark.parametrize("role", ROLES)
def test_the_baseline_dashboard_shows_every_panel_and_row_the_subject_shows(hospital: None, role: str) -> None:
    client = sign_in(Client(), User.objects.get(username=role))

    subject = _page(client, reverse("accounts:dashboard"), baseline=False)
    baseline = _page(client, reverse("accounts:dashboard"), baseline=True)

    assert baseline == subject
    assert len(subject[0]) >= 2  # every one of these roles has more than its main panel
    assert subject[2]["li"] > 0


@pytest.mark.parametrize("role", ROLES)
def test_the_baseline_dashboard_shows_the_same_step_up_cards(hospital: None, role: str) -> None:
    client = make_step_up_stale(sign_in(Client(), User.objects.get(username=role)))

    subject = _page(client, reverse("accounts:dashboard"), baseline=False)
    baseline = _page(client, reverse("accounts:dashboard"), baseline=True)

    assert baseline == subject
    assert "accounts/panels/step_up.html" in subject[0]


@pytest.mark.parametrize("role", ["physician", "nurse"])
def test_the_baseline_chart_shows_every_section_and_row_the_subject_shows(hospital: None, role: str) -> None:
    client = sign_in(Client(), User.objects.get(username=role))
    url = reverse("records:chart", args=[_charted_patient()])

    subject = _page(client, url, baseline=False)
    baseline = _page(client, url, baseline=True)

    assert baseline == subject
    assert "Doses given" in subject[1]
    with override_settings(ROOT_URLCONF="bench.load.baseline.urls"):
        clear_url_caches()
        page = client.get(url).content.decode()
    clear_url_caches()
    assert "Appendectomy" in page
    assert "Influenza vaccine" in page
