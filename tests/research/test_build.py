"""Building an approved request: the audited read, the refusals, and the files (issue 13)."""

from __future__ import annotations

import json
import os
import stat
from io import StringIO

import pandas as pd
import pyarrow.parquet as pq
import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from pycanon import anonymity

from audit.models import AccessEvent
from records.selectors import AccessNotRecorded
from records.services import note_write
from records.signals import disclosure_made, patient_data_accessed
from research.build import BuildRefused, dataset_build
from research.models import Dataset, DatasetRequest
from research.services import request_decide
from tests.factories import assign
from tests.research.conftest import AS_OF

pytestmark = pytest.mark.django_db


def read_csv(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_an_approved_request_is_built_with_one_access_per_patient_and_one_disclosure(
    population, approved, compliance, researcher, tmp_path
):
    included = population(8)
    population(3, start=50, sex="male")  # outside the cohort: screened, never read
    population(2, start=60, code="J45.909")  # another condition: screened, never read
    request = approved(sex="female")
    dataset = dataset_build(actor=compliance, request_id=request.pk, out=tmp_path / "out", as_of=AS_OF)

    reads = AccessEvent.objects.filter(action="research")
    assert sorted(reads.values_list("patient_id", flat=True)) == sorted(p.pk for p in included)
    for event in reads:
        assert event.actor_id == compliance.pk
        assert event.purpose == "research"
        assert event.sections == ["conditions", "demographics", "encounters", "medications", "observations"]
        assert event.detail == {"request": request.pk}
    # Screening read the criteria of every candidate (before deciding), and said so.
    assert AccessEvent.objects.filter(action="research_screen").count() == 13
    disclosure = AccessEvent.objects.get(action="disclose")
    assert disclosure.patient_id is None
    assert disclosure.purpose == "research"
    assert f"research request {request.pk}" in disclosure.detail["recipient"]
    assert researcher.username in disclosure.detail["recipient"]

    request.refresh_from_db()
    assert request.status == DatasetRequest.Status.BUILT
    assert dataset.rows == 8
    assert dataset.privacy_report["k_reached"] >= 5
    names = {f["name"] for f in dataset.files}
    assert names == {
        "dataset.csv",
        "dataset.parquet",
        "data_dictionary.json",
        "privacy_report.json",
        "observations.csv",
        "observations.parquet",
    }
    for name in names:
        assert stat.S_IMODE(os.stat(tmp_path / "out" / name).st_mode) == 0o600


def test_the_csv_holds_no_identifier_and_pycanon_confirms_k(population, approved, compliance, tmp_path):
    patients = population(12)
    request = approved()
    out = tmp_path / "out"
    dataset_build(actor=compliance, request_id=request.pk, out=out, as_of=AS_OF)

    text = "\n".join((out / name).read_text() for name in ("dataset.csv", "observations.csv"))
    for n, patient in enumerate(patients):
        for identifier in (
            f"Zelda{n}",
            f"Quixote{n}",
            f"MRN{700000 + n}",
            f"617-555-{n:04d}",
            f"zelda{n}@example.org",
            f"123-45-{n:04d}",
            f"Ignatius{n}",
            f"{n} Elm Street",
            patient.birth_date.isoformat(),
            str(patient.row_uid),
        ):
            assert identifier not in text
    assert "02139" not in text  # the full ZIP; ZIP3 021 may stay
    assert "Cambridge" not in text
    assert "2024-05" not in text  # the encounter and observation dates: years only

    frame = read_csv(out / "dataset.csv")
    report = json.loads((out / "privacy_report.json").read_text())
    quasi = list(report["levels"])
    assert {"age", "sex", "zip3", "first_encounter_year"} <= set(quasi)
    assert anonymity.k_anonymity(frame, quasi) >= request.k
    assert anonymity.k_anonymity(frame, quasi) == report["k_reached"]
    assert list(frame.columns) == [
        "pseudonym",
        "age",
        "sex",
        "zip3",
        "first_encounter_year",
        "state",
        "deceased_year",
        "conditions",
        "medications",
    ]
    assert set(frame["pseudonym"]) == set(read_csv(out / "observations.csv")["pseudonym"])


def test_parquet_equals_csv(population, approved, compliance, tmp_path):
    population(7)
    request = approved()
    out = tmp_path / "out"
    dataset_build(actor=compliance, request_id=request.pk, out=out, as_of=AS_OF)
    for stem in ("dataset", "observations"):
        csv_frame = read_csv(out / f"{stem}.csv")
        parquet_frame = pq.read_table(out / f"{stem}.parquet").to_pandas()
        pd.testing.assert_frame_equal(csv_frame, parquet_frame)


@pytest.mark.parametrize("status", ["submitted", "rejected"])
def test_only_an_approved_request_is_built(population, submit, compliance, tmp_path, status):
    population(6)
    request = submit()
    if status == "rejected":
        request_decide(actor=compliance, request_id=request.pk, approve=False)
    with pytest.raises(BuildRefused):
        dataset_build(actor=compliance, request_id=request.pk, out=tmp_path / "out", as_of=AS_OF)
    assert not (tmp_path / "out").exists()
    assert not AccessEvent.objects.filter(action__startswith="research").exists()


@pytest.mark.parametrize("role", ["researcher", "physician", "security"])
def test_only_compliance_builds(request, population, approved, tmp_path, role):
    population(6)
    dataset_request = approved()
    with pytest.raises(PermissionDenied):
        dataset_build(actor=request.getfixturevalue(role), request_id=dataset_request.pk, out=tmp_path / "o")
    assert not AccessEvent.objects.exists()


def test_a_cohort_smaller_than_k_is_refused_before_any_section_is_read(population, approved, compliance, tmp_path):
    population(4)
    request = approved()
    with pytest.raises(BuildRefused, match="too small"):
        dataset_build(actor=compliance, request_id=request.pk, out=tmp_path / "out", as_of=AS_OF)
    assert not (tmp_path / "out").exists()
    assert not AccessEvent.objects.filter(action="research").exists()
    assert not AccessEvent.objects.filter(action="disclose").exists()
    request.refresh_from_db()
    assert request.status == DatasetRequest.Status.APPROVED


def test_an_outlier_is_never_released_in_a_class_of_its_own(population, approved, compliance, tmp_path):
    population(5)
    population(1, start=60, age=85, zip_code="94103")
    request = approved(k=5, max_suppression=0.0)
    out = tmp_path / "out"
    dataset = dataset_build(actor=compliance, request_id=request.pk, out=out, as_of=AS_OF)
    frame = read_csv(out / "dataset.csv")
    assert len(frame) == dataset.rows == 6  # nothing suppressed: generalised instead
    assert anonymity.k_anonymity(frame, list(dataset.privacy_report["levels"])) >= 5
    assert "941" not in set(frame["zip3"])


def test_k_not_reachable_releases_nothing(population, approved, compliance, tmp_path, monkeypatch):
    from research.kanon import KAnonymityRefused

    population(6)
    request = approved()

    def refuse(*args, **kwargs):
        raise KAnonymityRefused("k=5 cannot be reached; nothing is released.")

    monkeypatch.setattr("research.build.plan_release", refuse)
    with pytest.raises(BuildRefused, match="cannot be reached"):
        dataset_build(actor=compliance, request_id=request.pk, out=tmp_path / "out", as_of=AS_OF)
    assert not (tmp_path / "out").exists()
    assert not AccessEvent.objects.filter(action="disclose").exists()
    request.refresh_from_db()
    assert request.status == DatasetRequest.Status.APPROVED


def test_an_access_event_that_cannot_be_written_aborts_the_build_and_writes_nothing(
    population, approved, compliance, tmp_path
):
    population(6)
    request = approved()
    calls = []

    def broken(sender, **kwargs):
        calls.append(kwargs["action"])
        if kwargs["action"] == "research":
            raise RuntimeError("audit store unavailable")

    patient_data_accessed.connect(broken, dispatch_uid="test-research-broken")
    try:
        with pytest.raises(AccessNotRecorded):
            dataset_build(actor=compliance, request_id=request.pk, out=tmp_path / "out", as_of=AS_OF)
    finally:
        patient_data_accessed.disconnect(dispatch_uid="test-research-broken")
    assert "research" in calls
    assert not (tmp_path / "out").exists()
    assert not Dataset.objects.exists()


def test_a_disclosure_that_cannot_be_written_aborts_the_build_and_writes_nothing(
    population, approved, compliance, tmp_path
):
    population(6)
    request = approved()

    def broken(sender, **kwargs):
        raise RuntimeError("audit store unavailable")

    disclosure_made.connect(broken, dispatch_uid="test-research-broken-disclosure")
    try:
        with pytest.raises(AccessNotRecorded):
            dataset_build(actor=compliance, request_id=request.pk, out=tmp_path / "out", as_of=AS_OF)
    finally:
        disclosure_made.disconnect(dispatch_uid="test-research-broken-disclosure")
    assert not (tmp_path / "out").exists()
    request.refresh_from_db()
    assert request.status == DatasetRequest.Status.APPROVED
    assert not Dataset.objects.exists()


def _build_queries(approved, compliance, out) -> int:
    request = approved()
    with CaptureQueriesContext(connection) as captured:
        dataset_build(actor=compliance, request_id=request.pk, out=out, as_of=AS_OF, chunk_size=500)
    return len(captured)


def test_the_number_of_queries_does_not_grow_with_the_patients(population, approved, compliance, tmp_path):
    population(6)
    small = _build_queries(approved, compliance, tmp_path / "a")
    population(12, start=100)
    large = _build_queries(approved, compliance, tmp_path / "b")
    assert large == small


def test_a_limited_data_set_keeps_dates_shifted_and_needs_its_agreement(population, approved, compliance, tmp_path):
    patients = population(6)
    request = approved(tier="limited", dua_reference="DUA-2026-007", date_shift=True, k=2)
    out = tmp_path / "out"
    dataset_build(actor=compliance, request_id=request.pk, out=out, as_of=AS_OF)
    frame = read_csv(out / "dataset.csv")
    assert "birth_date" in frame.columns
    text = (out / "dataset.csv").read_text()
    for patient in patients:
        assert patient.birth_date.isoformat() not in text  # shifted, or generalised
        assert patient.mrn not in text
        assert patient.phone not in text
    report = json.loads((out / "privacy_report.json").read_text())
    assert anonymity.k_anonymity(frame, list(report["levels"])) >= 2


def test_deid_export_builds_and_refuses_a_non_empty_directory(population, approved, compliance, tmp_path):
    population(6)
    request = approved()
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("x")
    with pytest.raises(CommandError, match="not empty"):
        call_command("deid_export", "--request", str(request.pk), "--out", str(out), "--actor", compliance.username)
    assert not AccessEvent.objects.filter(action__startswith="research").exists()
    stdout = StringIO()
    call_command(
        "deid_export",
        "--request",
        str(request.pk),
        "--out",
        str(out),
        "--actor",
        compliance.username,
        "--force",
        stdout=stdout,
    )
    assert "6 rows" in stdout.getvalue()
    assert (out / "dataset.csv").exists()
    with pytest.raises(CommandError, match="approved"):
        call_command(
            "deid_export",
            "--request",
            str(request.pk),
            "--out",
            str(tmp_path / "again"),
            "--actor",
            compliance.username,
        )


@pytest.mark.parametrize("role", ["researcher", "physician"])
def test_the_research_read_refuses_anyone_but_compliance(request, population, role):
    from records.selectors import AccessRefused
    from records.selectors.research import RESEARCH_SECTIONS, ResearchCriteria, cohort_for_research

    population(3)
    with pytest.raises(AccessRefused) as caught:
        cohort_for_research(
            actor=request.getfixturevalue(role),
            request_ref=1,
            criteria=ResearchCriteria(as_of=AS_OF),
            sections=RESEARCH_SECTIONS,
        )
    assert caught.value.status == 403
    assert not AccessEvent.objects.exists()


def test_small_chunks_still_write_one_event_per_patient(population, approved, compliance, tmp_path):
    patients = population(7)
    request = approved()
    dataset_build(actor=compliance, request_id=request.pk, out=tmp_path / "out", as_of=AS_OF, chunk_size=3)
    reads = list(AccessEvent.objects.filter(action="research").values_list("patient_id", flat=True))
    assert sorted(reads) == sorted(p.pk for p in patients)


def test_a_90_plus_cohort_keeps_no_year_that_gives_the_age_back(population, approved, compliance, tmp_path):
    population(6, age=95)
    request = approved()
    out = tmp_path / "out"
    dataset_build(actor=compliance, request_id=request.pk, out=out, as_of=AS_OF)
    frame = read_csv(out / "dataset.csv")
    assert set(frame["age"]) <= {"90+", "80+", "*"}
    assert set(frame["first_encounter_year"]) <= {"", "*"}
    assert set(read_csv(out / "observations.csv")["year"]) == {""}


def test_notes_are_dropped_unless_asked_and_then_released_scrubbed(
    population, approved, compliance, physician, tmp_path
):
    patients = population(6)
    physician.first_name, physician.last_name = "Hortensia", "Okonkwo-Baptiste"
    physician.save()
    for n, patient in enumerate(patients):
        assign(physician, patient)
        note_write(
            actor=physician,
            patient_id=patient.pk,
            kind="progress",
            text=(
                f"Zelda{n} Quixote{n} (MRN{700000 + n}) seen with her brother Ignatius{n} Reilly; "
                f"call 617-555-{n:04d} or zelda{n}@example.org. Born {patient.birth_date:%m/%d/%Y}. "
                "HbA1c 7.2 %, metformin 500 mg twice daily, BP 128/82. Reviewed by Dr. Okonkwo-Baptiste."
            ),
        )
    without = approved()
    dataset_build(actor=compliance, request_id=without.pk, out=tmp_path / "plain", as_of=AS_OF)
    assert not (tmp_path / "plain" / "notes.csv").exists()

    request = approved(fields=["demographics_generalised", "conditions", "notes_scrubbed"])
    out = tmp_path / "notes"
    dataset_build(actor=compliance, request_id=request.pk, out=out, as_of=AS_OF)
    notes = pd.read_csv(out / "notes.csv", dtype=str, keep_default_na=False)
    assert len(notes) == 6
    assert list(notes.columns) == ["pseudonym", "kind", "year", "text"]
    text = "\n".join(notes["text"])
    for n, patient in enumerate(patients):
        for identifier in (
            f"Zelda{n}",
            f"Quixote{n}",
            f"MRN{700000 + n}",
            f"617-555-{n:04d}",
            f"zelda{n}@example.org",
            f"Ignatius{n}",
            f"{patient.birth_date:%m/%d/%Y}",
        ):
            assert identifier not in text
    assert "Okonkwo" not in text  # the author, a name the record knows
    for clinical in ("HbA1c 7.2 %", "metformin 500 mg", "128/82"):
        assert clinical in text
    assert "[NAME]" in text
    assert set(notes["pseudonym"]) <= set(read_csv(out / "dataset.csv")["pseudonym"])
    dictionary = json.loads((out / "data_dictionary.json").read_text())
    assert "scrubbed" in dictionary["notes"]
    reads = AccessEvent.objects.filter(action="research").order_by("pk").values_list("sections", flat=True)
    first_build = list(reads)[:6]
    assert all("notes" not in list(sections) for sections in first_build)  # not read when not asked
    assert all("notes" in list(sections) for sections in list(reads)[6:])


def test_the_fhir_variant_says_what_the_csv_says_and_validates_as_r4(population, approved, compliance, tmp_path):
    from exchange.fhir.validate import _schema

    patients = population(12)
    request = approved(fields=["demographics_generalised", "conditions", "observations", "medications", "fhir_bundle"])
    out = tmp_path / "fhir"
    dataset_build(actor=compliance, request_id=request.pk, out=out, as_of=AS_OF)

    bundle = json.loads((out / "dataset.fhir.json").read_text())
    _, whole = _schema()
    assert whole.is_valid(bundle)
    frame = read_csv(out / "dataset.csv")
    by_type: dict[str, list[dict]] = {}
    for entry in bundle["entry"]:
        by_type.setdefault(entry["resource"]["resourceType"], []).append(entry)
    assert len(by_type["Patient"]) == len(frame)
    assert {p["resource"]["id"] for p in by_type["Patient"]} == {a.replace("_", "-") for a in frame["pseudonym"]}
    assert len(by_type["Observation"]) == len(read_csv(out / "observations.csv"))
    patient_urls = {p["fullUrl"] for p in by_type["Patient"]}
    for kind in ("Condition", "MedicationStatement", "Observation"):
        assert {e["resource"]["subject"]["reference"] for e in by_type[kind]} <= patient_urls
    text = (out / "dataset.fhir.json").read_text()
    for n, patient in enumerate(patients):
        for identifier in (f"Zelda{n}", f"Quixote{n}", f"MRN{700000 + n}", f"617-555-{n:04d}", str(patient.row_uid)):
            assert identifier not in text
    assert "2024-05" not in text  # years only in the Safe Harbor tier
    assert "02139" not in text
