"""Two imports of the same bundle at the same time write it once: the database holds one row per
patient and source id (records.models.unique_source), and the import refused by it tries the bundle
once more and counts what the other wrote as present (exchange/fhir/importer.py _write_bundle)."""

from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path

import pytest
from django.apps import apps as django_apps
from django.conf import settings
from django.db import IntegrityError, connection, transaction

from accounts.models import User
from audit.models import ChangeEvent
from exchange.fhir import importer
from exchange.fhir.importer import import_bundle, import_paths
from exchange.fhir.mapping import DIRECTORY_TYPES
from exchange.fhir.validate import read_valid_bundle
from records.models import Condition, Encounter, Immunization, Observation, Patient
from records.services import imported_entries_create
from tests.exchange.races import race
from tests.factories import PatientFactory

SAMPLES = Path(settings.BASE_DIR).parent / "shared" / "data" / "fhir" / "synthea-r4"
pytestmark = pytest.mark.skipif(
    not SAMPLES.is_dir() or not Path(settings.FHIR_SCHEMA_PATH).is_file(),
    reason="the shared FHIR samples and R4 schema (../shared/data) are absent",
)
PATIENT_FILES = sorted(p for p in SAMPLES.glob("*.json") if not p.name.startswith(importer.SHARED_PREFIXES))
SMALL = min(PATIENT_FILES, key=lambda p: p.stat().st_size) if PATIENT_FILES else Path()
MODELS = (Patient, Encounter, Observation, Condition, Immunization)


def _rows() -> dict[str, int]:
    counts = {model.__name__: model.objects.count() for model in MODELS}
    counts["ChangeEvent"] = ChangeEvent.objects.count()
    return counts


@pytest.mark.django_db
def test_a_bundle_another_import_wrote_meanwhile_is_tried_again_and_counted_present(
    front_desk: User, stale_reads: dict[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    stale_reads["stale"] = 0
    first = import_paths([SMALL], actor=front_desk, progress=False)
    assert not first.failed
    before = _rows()
    stale_reads.update(stale=stale_reads["imports"] + 1)  # the next import's first attempt reads stale

    with caplog.at_level(logging.INFO, logger="exchange.fhir.importer"):
        second = import_paths([SMALL], actor=front_desk, progress=False)

    assert not second.failed, second.failed[0].problems
    assert stale_reads["imports"] == 3  # the first import, then the second's two attempts
    assert _rows() == before  # no duplicate row, and the refused attempt's change events were undone
    for name in ("Encounter", "Observation", "Condition"):
        counts = second.counts[name]
        assert counts.imported == 0
        assert counts.present == first.counts[name].imported
    assert "trying it once more" in caplog.text


@pytest.mark.django_db
def test_a_bundle_refused_by_the_unique_check_twice_is_refused_with_nothing_written(
    front_desk: User, stale_reads: dict[str, int]
) -> None:
    stale_reads["stale"] = 0
    assert not import_paths([SMALL], actor=front_desk, progress=False).failed
    before = _rows()
    stale_reads["stale"] = 99  # every attempt reads stale: the database's check is all that stops it

    second = import_paths([SMALL], actor=front_desk, progress=False)

    assert stale_reads["imports"] == 3  # tried twice, not more
    (failed,) = second.failed
    assert [problem.message for problem in failed.problems] == ["refused by the database's checks"]
    assert _rows() == before


@pytest.mark.django_db
def test_the_database_refuses_a_second_row_of_one_patient_and_source_id_but_not_rows_entered_here(
    front_desk: User,
) -> None:
    assert not import_paths([SMALL], actor=front_desk, progress=False).failed
    imported = Condition.objects.exclude(source_id="").first()
    assert imported is not None
    copy = Condition(
        patient_id=imported.patient_id, source_id=imported.source_id, display="x", recorded_at=imported.recorded_at
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        imported_entries_create(actor=front_desk, entries=[copy])
    # The source id is unique per patient, not overall (Synthea's ids are unique; another source's may
    # repeat one); rows entered here have none, and a patient has any number of them (the suite's vitals).
    other = PatientFactory()
    imported_entries_create(
        actor=front_desk,
        entries=[
            Condition(patient_id=other.pk, source_id=imported.source_id, display="x", recorded_at=imported.recorded_at)
        ],
    )
    assert Condition.objects.filter(source_id=imported.source_id).count() == 2


@pytest.mark.skipif(connection.vendor != "postgresql", reason="two writers at once: PostgreSQL's row locks")
@pytest.mark.django_db(transaction=True)
def test_two_imports_of_one_bundle_at_the_same_time_write_it_once(front_desk: User, tmp_path: Path) -> None:
    """A writes the bundle and holds its transaction open; B starts, finds nothing committed, writes the
    same rows and waits on A's at the unique index; A commits; B is refused, tries again, finds A's."""
    # The bundle's practitioners and organisations are in the directory already (as after the shared
    # hospitalInformation bundles): B would otherwise wait at the directory's own unique check, before
    # reading any record, and never race on the records at all.
    bundle = json.loads(SMALL.read_text())
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["resourceType"] in DIRECTORY_TYPES]
    directory = tmp_path / "directory.json"
    directory.write_text(json.dumps(bundle))
    assert not import_paths([directory], actor=front_desk, progress=False).failed
    valid = read_valid_bundle(SMALL, known=importer.known_target)
    raced = race(
        lambda: import_bundle(valid, actor=front_desk), lambda: import_paths([SMALL], actor=front_desk, progress=False)
    )

    assert raced.waiting, "the second import never waited on the first's rows"
    assert all(query.startswith('INSERT INTO "records_') for query in raced.waiting), [q[:40] for q in raced.waiting]
    second_summary = raced.second
    assert not second_summary.failed, second_summary.failed[0].problems
    for name in ("Encounter", "Observation", "Condition"):
        assert second_summary.counts[name].imported == 0
        assert second_summary.counts[name].present == raced.first[name].imported
    assert Patient.objects.exclude(source_id="").count() == 1
    for model in (Encounter, Observation, Condition, Immunization):
        assert model.objects.values("patient_id", "source_id").distinct().count() == model.objects.count()


@pytest.mark.django_db
def test_the_migration_names_the_tables_imported_twice_before_it_instead_of_failing_on_the_index(
    front_desk: User,
) -> None:
    migration = importlib.import_module("records.migrations.0010_unique_import_source")
    assert not import_paths([SMALL], actor=front_desk, progress=False).failed
    migration.refuse_duplicates(django_apps, None)  # nothing imported twice: nothing to say
    imported = Condition.objects.exclude(source_id="").first()
    assert imported is not None
    with connection.cursor() as cursor:  # the schema before the migration (rolled back with the test)
        cursor.execute("DROP INDEX records_condition_unique_source")
    imported_entries_create(
        actor=front_desk,
        entries=[
            Condition(
                patient_id=imported.patient_id,
                source_id=imported.source_id,
                display="Confidential finding",
                recorded_at=imported.recorded_at,
            )
        ],
    )

    with pytest.raises(RuntimeError) as refused:
        migration.refuse_duplicates(django_apps, None)

    assert str(refused.value).endswith("groups per table: records_condition: 1")
    assert imported.source_id not in str(refused.value)
