"""Cost of the full read path on a chart page, against the same page from plaintext rows (same run, ratio).

Full path: GET /patients/<id>/ as a signed-in physician on the care team: policy check, one access
event listing the sections shown, the anomaly rules where production runs them (in the request on
SQLite; on PostgreSQL the sealer judges the event after the request, in its own process: not timed
here, ``--rules-at request`` times it), decryption of what the page shows, the real template. Baseline: the same
template and context, built with the same ORM queries from identical *plaintext* copies of the rows
(mirror tables without encrypted columns), with no policy check and no audit. Both go through the same middleware stack. A patient
with 200 observations and 20 notes, as in the issue. Both pages draw the vital-sign trends (the chart
has since gained them; a baseline without them measured the trends as overhead). Target: at most 1.25x.

    .venv/bin/python -m bench.chart_view [--requests 60] [--rules-at request|sealer]
"""

from __future__ import annotations

import argparse
import datetime
import os
from collections.abc import Callable

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "healthcrypt.settings_test")

import django

django.setup()

from django.db import connection, models
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.test import Client, override_settings
from django.test.utils import setup_test_environment
from django.urls import include, path
from django.utils import timezone

from accounts.models import Department, User
from accounts.roles import DataCategory, Role
from bench.interleave import interleave, line, paired_ratio
from records import selectors
from records.models import (
    Allergy,
    Attachment,
    CareAssignment,
    ClinicalNote,
    Condition,
    Encounter,
    Immunization,
    Medication,
    Observation,
    Order,
    Procedure,
)
from records.selectors.access import _name, _paged, _with_staff
from records.selectors.observations import TREND_SCAN, vital_trends
from records.selectors.read_models import OBSERVATIONS_PER_PAGE
from records.services import (
    care_assignment_create,
    medication_prescribe,
    note_write,
    observation_record,
    patient_register,
)
from records.views import chart_context
from tests.conftest import sign_in


class PlainPatient(models.Model):
    """Plaintext mirrors of the rows the page shows: the same columns, no encryption."""

    mrn = models.CharField(max_length=32)
    given_name = models.CharField(max_length=100)
    family_name = models.CharField(max_length=100)
    birth_date = models.DateField()
    sex = models.CharField(max_length=10)

    class Meta:
        app_label = "records"

    def __str__(self) -> str:
        return f"bench row #{self.pk}"


class PlainObservation(models.Model):
    patient = models.ForeignKey(PlainPatient, on_delete=models.CASCADE)
    category = models.CharField(max_length=20)
    display = models.CharField(max_length=255)
    value = models.CharField(max_length=255)
    unit = models.CharField(max_length=32)
    loinc_code = models.CharField(max_length=32)
    effective_at = models.DateTimeField()
    recorded_by = models.ForeignKey(User, null=True, on_delete=models.PROTECT, related_name="+")

    class Meta:
        app_label = "records"

    def __str__(self) -> str:
        return f"bench row #{self.pk}"


class PlainNote(models.Model):
    patient = models.ForeignKey(PlainPatient, on_delete=models.CASCADE)
    kind = models.CharField(max_length=20)
    author = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    signed_at = models.DateTimeField()
    text = models.TextField()

    class Meta:
        app_label = "records"

    def __str__(self) -> str:
        return f"bench row #{self.pk}"


def _plain_row(o: PlainObservation) -> selectors.ObservationRow:
    return selectors.ObservationRow(
        o.pk, o.category, o.display, o.value, o.unit, o.loinc_code, o.effective_at, _name(o.recorded_by), None
    )


def plain_chart(request: HttpRequest, patient_id: int) -> HttpResponse:
    """The baseline page: the same ORM queries on plaintext rows; no policy check, no audit, no decryption
    of the big sections. The small sections (empty or one row here) use the real tables."""
    p = PlainPatient.objects.get(pk=patient_id)
    # The same read as the real page: one page of observations, its total and the trend readings in
    # one query (``_paged``), and the trend lines drawn from them; the page shows trends on both sides.
    observations = _with_staff(PlainObservation.objects.filter(patient_id=patient_id), "recorded_by")
    newest_first = ("-effective_at", "-id")
    scan = observations.filter(category="Vital signs").order_by(*newest_first)[:TREND_SCAN]
    page, rows, scanned = _paged(observations, newest_first, 1, OBSERVATIONS_PER_PAGE, also=scan)
    obs_rows = tuple(_plain_row(o) for o in rows)
    trends = vital_trends([_plain_row(o) for o in scanned])
    notes = PlainNote.objects.filter(patient_id=patient_id)
    total_notes = notes.count()
    note_rows = tuple(
        selectors.NoteRow(n.pk, n.kind, _name(n.author), n.signed_at, n.text, None, None)
        for n in _with_staff(notes, "author").order_by("-signed_at", "-id")[:20]
    )
    real_id = REAL_PATIENT[patient_id]
    sections = {
        "care_team": tuple(CareAssignment.objects.filter(patient_id=real_id).select_related("staff")),
        "encounters": tuple(Encounter.objects.filter(patient_id=real_id)[:50]),
        "conditions": tuple(Condition.objects.filter(patient_id=real_id)),
        "allergies": tuple(Allergy.objects.filter(patient_id=real_id)),
        "medications": tuple(
            selectors.MedicationRow(m.pk, m.display, m.code, m.dosage, m.get_status_display(), "", m.prescribed_at)
            for m in Medication.objects.filter(patient_id=real_id)
        ),
        "orders": tuple(Order.objects.filter(patient_id=real_id)[:100]),
        "attachments": tuple(Attachment.objects.filter(patient_id=real_id)),
        "procedures": tuple(Procedure.objects.filter(patient_id=real_id)[:100]),
        "immunizations": tuple(Immunization.objects.filter(patient_id=real_id)[:100]),
    }
    patient = selectors.Demographics(
        p.pk, p.mrn, p.given_name, p.family_name, p.birth_date, p.sex, False,
        address_line="", city="", state="", postal_code="", phone="", email="", national_id_last4="",
        emergency_contact_name="", emergency_contact_phone="", deceased_date=None,
    )  # fmt: skip
    chart = selectors.Chart(
        patient=patient,
        explanation="care_team",
        categories=frozenset(DataCategory),
        observations=obs_rows,
        observations_page=page,
        vital_trends=trends,
        notes=note_rows,
        notes_page=selectors.Page(1, 20, total_notes),
        medications=sections["medications"],
        care_team=(),
    )
    return render(request, "records/chart.html", chart_context(request, chart))


REAL_PATIENT: dict[int, int] = {}


urlpatterns = [path("bench/plain/<int:patient_id>/", plain_chart), path("", include("healthcrypt.urls"))]


def build(observations: int, notes: int) -> tuple[User, int, int]:
    ward = Department.objects.create(code="bench-ward", name="Bench ward", kind=Department.Kind.WARD)
    doctor = User.objects.create_user(
        "bench_doc", password="x" * 20, role=Role.PHYSICIAN, department=ward, first_name="Ben", last_name="Ch"
    )
    nurse = User.objects.create_user("bench_nurse", password="x" * 20, role=Role.NURSE, department=ward)
    patient = patient_register(
        actor=None, mrn="B-1", given_name="Pat", family_name="Ient", birth_date=datetime.date(1970, 5, 4), sex="female"
    )
    start = timezone.now() - datetime.timedelta(days=1)
    for staff, role in ((doctor, "attending"), (nurse, "primary_nurse")):
        care_assignment_create(actor=None, staff=staff, patient=patient, team_role=role, starts_at=start)
    for i in range(observations):
        observation_record(
            actor=nurse,
            patient_id=patient.pk,
            category="vital-signs",
            display="Heart rate",
            value=str(60 + i % 50),
            unit="/min",
            loinc_code="8867-4",
            effective_at=start + datetime.timedelta(minutes=i),
        )
    for i in range(notes):
        note_write(
            actor=doctor, patient_id=patient.pk, kind="progress", text=f"Progress note {i}: stable, continue plan. " * 3
        )
    medication_prescribe(actor=doctor, patient_id=patient.pk, display="Aspirin 75 mg", dosage="daily")
    with connection.schema_editor() as editor:
        for model in (PlainPatient, PlainObservation, PlainNote):
            editor.create_model(model)
    plain = PlainPatient.objects.create(
        mrn="B-1", given_name="Pat", family_name="Ient", birth_date=datetime.date(1970, 5, 4), sex="female"
    )
    REAL_PATIENT[plain.pk] = patient.pk
    PlainObservation.objects.bulk_create(
        PlainObservation(
            patient=plain,
            category=o.get_category_display(),
            display=o.display,
            value=o.value,
            unit=o.unit,
            loinc_code=o.loinc_code,
            effective_at=o.effective_at,
            recorded_by_id=o.recorded_by_id,
        )
        for o in Observation.objects.filter(patient=patient)
    )
    PlainNote.objects.bulk_create(
        PlainNote(patient=plain, kind=n.get_kind_display(), author_id=n.author_id, signed_at=n.signed_at, text=n.text)
        for n in ClinicalNote.objects.filter(patient=patient)
    )
    return doctor, patient.pk, plain.pk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=60, help="rounds: one request of each page per round")
    parser.add_argument(
        "--rules-at",
        choices=("request", "sealer"),
        help="where the anomaly rules judge the view (default: as production on this database)",
    )
    args = parser.parse_args()
    setup_test_environment()
    original_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, serialize=False)
    try:
        run(args)
    finally:
        connection.creation.destroy_test_db(original_name, verbosity=0)


def run(args: argparse.Namespace) -> None:
    doctor, patient_id, plain_id = build(200, 20)
    # Where production judges accesses on this database (healthcrypt/settings.py): on PostgreSQL the
    # sealer does it, in its own process, after the request (docs/decisions/0009); the test settings
    # this bench starts from judge in the request for every database. --rules-at overrides.
    rules_at = args.rules_at or ("request" if connection.vendor == "sqlite" else "sealer")
    with override_settings(ROOT_URLCONF=__name__, ANOMALY_RULES_AT=rules_at):
        client = sign_in(Client(), doctor)

        def get(url: str) -> Callable[[], None]:
            def one() -> None:
                assert client.get(url).status_code == 200

            return one

        # Request by request, the order rotated each round (bench/interleave.py): drift on a busy
        # machine lands on both pages alike.
        found = interleave(
            {"full": get(f"/patients/{patient_id}/"), "plain": get(f"/bench/plain/{plain_id}/")},
            rounds=args.requests,
            warmup=3,
        )
    full, plain = found["full"], found["plain"]
    print(
        f"chart page, 200 observations + 20 notes ({connection.vendor}, rules judged in the {rules_at}), "
        f"{args.requests} rounds, interleaved"
    )
    print(line("plaintext rows, no policy, no audit", plain, per=1000, unit="ms"))
    print(line("full read path", full, per=1000, unit="ms", baseline=plain) + "  (target <= 1.25x)")
    print(
        f"ratio of medians {full.median / plain.median:4.2f}x, median of per-round ratios {paired_ratio(full, plain):4.2f}x"
    )


if __name__ == "__main__":
    main()
