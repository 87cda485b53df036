"""Build the dataset of an approved request (issue 13): audited read, de-identification, k-anonymity,
files. ``manage.py deid_export`` is the command-line front of ``dataset_build``.

Order of the steps, and why:

1. Policy: the request is approved; the actor holds ``approve_dataset`` (compliance) and is not the
   request's researcher. The output directory is empty (or ``force``).
2. Screening (records.selectors.research): one ``research_screen`` access event per candidate, then
   the criteria are judged. A cohort smaller than k is refused here, before any section is read.
3. The read: one ``research`` access event per included patient (chunk by chunk, before that chunk
   is decrypted); each patient becomes one de-identified row at once (pseudonym, tier transform),
   so identified values live only as long as one chunk.
4. k-anonymity over the quasi-identifiers (research.kanon): generalise, suppress within the
   request's limit, or refuse (nothing released).
5. The one disclosure event, then the files (0600): if the event cannot be written, nothing is
   written to disk. A failure while writing removes the files written so far.
6. The Dataset row (counts, privacy report, file names and SHA-256) and the request's status
   ``built``, in one transaction.

Columns. Safe Harbor: ``pseudonym``, ``age`` (or 90+), ``sex``, ``zip3``, ``first_encounter_year``
and, with ``demographics_generalised``, ``state`` and ``deceased_year``. The birth year is left out:
with the age it adds nothing but a finer age, which k-anonymity would have to generalise away again.
Limited Data Set: ``pseudonym``, ``age``, ``sex``, ``postal_code``, ``first_encounter_date`` and, with
``demographics_generalised``, ``city``, ``state``, ``birth_date``, ``deceased_date`` (dates shifted
per patient when the request says so). Every demographic column is a quasi-identifier. ``conditions``
and ``medications`` are the patient's distinct codes joined by ``;`` (``conditions`` is the sensitive
attribute of the l-diversity figure); observations go to a second file keyed by pseudonym, only for
released patients.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from tqdm import tqdm

from accounts.roles import Capability, DataCategory, has_capability
from records.selectors.research import (
    ResearchCriteria,
    ResearchPatient,
    cohort_for_research,
    research_disclosure_record,
)
from research.fhir import dataset_bundle
from research.kanon import (
    Hierarchy,
    KAnonymityRefused,
    QuasiIdentifierCounts,
    age_hierarchy,
    categorical_hierarchy,
    plan_release,
    sex_hierarchy,
    year_hierarchy,
    zip3_hierarchy,
)
from research.keys import research_pseudonym_key
from research.models import Dataset, DatasetRequest
from research.output import write_csv
from research.pseudonyms import date_shift_days, pseudonym, shift
from research.safe_harbor import PatientDemographics, limited_data_set, safe_harbor_demographics
from research.scrub import KnownIdentifiers, scrub

logger = logging.getLogger(__name__)

CODE_SEPARATOR = ";"
OBSERVATION_COLUMNS = ("pseudonym", "loinc_code", "value", "unit", "year")
OBSERVATION_COLUMNS_LIMITED = ("pseudonym", "loinc_code", "value", "unit", "date")
NOTE_COLUMNS = ("pseudonym", "kind", "year", "text")
NOTE_COLUMNS_LIMITED = ("pseudonym", "kind", "date", "text")
SENSITIVE = "conditions"


class BuildRefused(Exception):
    """The dataset is not built; the message says why (counts only, never patient data)."""


@dataclass(frozen=True)
class BuiltFile:
    name: str
    sha256: str
    bytes: int


def _prefix_hierarchy(attribute: str) -> Hierarchy:
    # A full ZIP (limited tier): kept -> ZIP3 -> two digits -> "*".
    return Hierarchy(
        attribute,
        (("ZIP", lambda v: v), ("ZIP3", lambda v: v[:3] + "*"), ("two digits", lambda v: v[:2] + "*")),
    )


def _date_hierarchy(attribute: str) -> Hierarchy:
    # An ISO date (limited tier): kept -> year-month -> year -> "*" (empty stays its own category).
    return Hierarchy(attribute, (("date", lambda v: v), ("month", lambda v: v[:7]), ("year", lambda v: v[:4])))


def _columns(request: DatasetRequest) -> tuple[list[str], list[Hierarchy]]:
    """The main file's columns and the hierarchies of its quasi-identifiers."""
    demographics = "demographics_generalised" in request.fields
    if request.tier == DatasetRequest.Tier.SAFE_HARBOR:
        hierarchies = [age_hierarchy("age"), sex_hierarchy("sex"), zip3_hierarchy("zip3")]
        hierarchies.append(year_hierarchy("first_encounter_year"))
        if demographics:
            hierarchies += [categorical_hierarchy("state"), year_hierarchy("deceased_year")]
    else:
        hierarchies = [age_hierarchy("age"), sex_hierarchy("sex"), _prefix_hierarchy("postal_code")]
        hierarchies.append(_date_hierarchy("first_encounter_date"))
        if demographics:
            hierarchies += [
                categorical_hierarchy("city"),
                categorical_hierarchy("state"),
                _date_hierarchy("birth_date"),
                _date_hierarchy("deceased_date"),
            ]
    columns = ["pseudonym", *(h.attribute for h in hierarchies)]
    columns += [name for name in ("conditions", "medications") if name in request.fields]
    return columns, hierarchies


def _codes(values: Iterable[str]) -> str:
    return CODE_SEPARATOR.join(sorted({v.strip() for v in values if v.strip()}))


def _notes(
    request: DatasetRequest,
    patient: ResearchPatient,
    demographics: PatientDemographics,
    alias: str,
    *,
    hide_year: bool,
    days: int,
) -> list[dict[str, str]]:
    """The patient's notes scrubbed (research/scrub: every identifier the record knows, the authors'
    names and the record's dates, plus patterns), each with its kind and year (limited tier: its
    shifted date). Only when the request asks for ``notes_scrubbed``; otherwise notes are dropped."""
    if "notes_scrubbed" not in request.fields:
        return []
    dates = [d for d in (patient.first_encounter,) if d is not None] + [n.signed_at.date() for n in patient.notes]
    known = KnownIdentifiers.from_demographics(
        demographics, staff_names=[n.author for n in patient.notes if n.author], dates=dates
    )
    rows = []
    for note in patient.notes:
        row = {"pseudonym": alias, "kind": note.kind, "text": scrub(note.text, known).text}
        if request.tier == DatasetRequest.Tier.SAFE_HARBOR:
            row["year"] = "" if hide_year else str(note.signed_at.year)
        else:
            row["date"] = shift(note.signed_at.date(), days).isoformat()
        rows.append(row)
    return rows


def _row(
    request: DatasetRequest, patient: ResearchPatient, key: bytes, as_of: date
) -> tuple[dict[str, str], list[dict[str, str]], list[dict[str, str]]]:
    """One patient's de-identified row, observation rows and scrubbed notes (built from an allow-list)."""
    demographics = PatientDemographics(
        mrn=patient.mrn,
        given_name=patient.given_name,
        family_name=patient.family_name,
        birth_date=patient.birth_date,
        sex=patient.sex,
        address_line=patient.address_line,
        city=patient.city,
        postal_code=patient.postal_code,
        state=patient.state,
        phone=patient.phone,
        email=patient.email,
        national_id=patient.national_id,
        emergency_contact_name=patient.emergency_contact_name,
        emergency_contact_phone=patient.emergency_contact_phone,
        deceased_date=patient.deceased_date,
    )
    alias = pseudonym(key, request.project, patient.uid)
    row: dict[str, str] = {"pseudonym": alias}
    observations: list[dict[str, str]] = []
    if request.tier == DatasetRequest.Tier.SAFE_HARBOR:
        sh = safe_harbor_demographics(demographics, as_of=as_of).as_row()
        row |= {"age": sh["age"], "sex": sh["sex"], "zip3": sh["zip3"]}
        over_89 = sh["birth_year"] == "" and sh["age"] == "90+"
        # A 90+ patient's years could give the age back: their encounter and death years go too.
        first = patient.first_encounter
        row["first_encounter_year"] = "" if first is None or over_89 else str(first.year)
        if "demographics_generalised" in request.fields:
            row |= {"state": sh["state"], "deceased_year": sh["deceased_year"]}
        notes = _notes(request, patient, demographics, alias, hide_year=over_89, days=0)
        for o in patient.observations:
            year = "" if over_89 else str(o.effective_at.year)
            observations.append(
                {"pseudonym": alias, "loinc_code": o.loinc_code, "value": o.value, "unit": o.unit, "year": year}
            )
    else:
        days = date_shift_days(key, request.project, patient.uid) if request.date_shift else 0
        lds = limited_data_set(demographics, as_of=as_of)

        def moved(value: date | None) -> str:
            return "" if value is None else shift(value, days).isoformat()

        notes = _notes(request, patient, demographics, alias, hide_year=False, days=days)

        row |= {"age": str(lds.age), "sex": lds.sex, "postal_code": lds.postal_code}
        row["first_encounter_date"] = moved(patient.first_encounter)
        if "demographics_generalised" in request.fields:
            row |= {
                "city": lds.city,
                "state": lds.state,
                "birth_date": moved(lds.birth_date),
                "deceased_date": moved(lds.deceased_date),
            }
        for o in patient.observations:
            observations.append(
                {
                    "pseudonym": alias,
                    "loinc_code": o.loinc_code,
                    "value": o.value,
                    "unit": o.unit,
                    "date": moved(o.effective_at.date()),
                }
            )
    if "conditions" in request.fields:
        row["conditions"] = _codes(c.code for c in patient.conditions)
    if "medications" in request.fields:
        row["medications"] = _codes(m.code for m in patient.medications)
    return row, observations, notes


def _sections(request: DatasetRequest) -> frozenset[DataCategory]:
    sections = {DataCategory.DEMOGRAPHICS, DataCategory.ENCOUNTERS}
    for name, category in (
        ("conditions", DataCategory.CONDITIONS),
        ("observations", DataCategory.OBSERVATIONS),
        ("medications", DataCategory.MEDICATIONS),
        ("notes_scrubbed", DataCategory.NOTES),
    ):
        if name in request.fields:
            sections.add(category)
    return frozenset(sections)


def _check_out(out: Path, *, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise BuildRefused("The output path exists and is not a directory.")
    if out.exists() and any(out.iterdir()) and not force:
        raise BuildRefused("The output directory is not empty (use --force to write into it).")


def _new_file(path: Path) -> int:
    if path.exists():
        path.unlink()  # only reached with force; the file is replaced, never appended to
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


def _write_parquet(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, str]]) -> None:
    table = pa.table({name: pa.array([row[name] for row in rows], type=pa.string()) for name in columns})
    with os.fdopen(_new_file(path), "wb") as f:
        pq.write_table(table, f)


def _write_json(path: Path, value: Any) -> None:
    with os.fdopen(_new_file(path), "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, sort_keys=True)
        f.write("\n")


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, str]]) -> None:
    if path.exists():
        path.unlink()
    write_csv(path, columns, rows)


def _digest(path: Path) -> BuiltFile:
    data = path.read_bytes()
    return BuiltFile(path.name, hashlib.sha256(data).hexdigest(), len(data))


def _dictionary(request: DatasetRequest, columns: Sequence[str], hierarchies: Sequence[Hierarchy]) -> dict[str, Any]:
    quasi = {h.attribute: [name for name, _ in h.steps] + ["suppressed (*)"] for h in hierarchies}
    described = {
        "pseudonym": "Keyed pseudonym of the patient in this request's project (HMAC-SHA256); not reversible.",
        "age": "Age in whole years on the release date (Safe Harbor: 90+ for ages over 89), possibly banded.",
        "sex": "Administrative sex.",
        "zip3": "First three digits of the ZIP code; 000 for the 17 restricted areas.",
        "postal_code": "ZIP code (limited data set).",
        "first_encounter_year": "Year of the earliest encounter (empty for 90+ patients).",
        "first_encounter_date": "Date of the earliest encounter (shifted if the request asks).",
        "state": "State.",
        "city": "Town or city.",
        "deceased_year": "Year of death (empty when alive or 90+).",
        "birth_date": "Birth date (shifted if the request asks).",
        "deceased_date": "Date of death (shifted if the request asks).",
        "conditions": "The patient's distinct condition codes, ';'-separated.",
        "medications": "The patient's distinct medication codes, ';'-separated.",
    }
    return {
        "request": request.pk,
        "tier": request.tier,
        "date_shift": request.date_shift,
        "columns": {name: {"description": described[name], "levels": quasi.get(name)} for name in columns},
        "observations": "observations.csv/.parquet: one row per observation of a released patient"
        if "observations" in request.fields
        else None,
        "notes": "notes.csv/.parquet: one row per note of a released patient, scrubbed: identifiers replaced "
        "by [NAME], [DATE], [PHONE], [EMAIL], [ADDRESS], [ID], [URL], [IP], [ZIP], [AGE 90+] "
        "(method and measured recall: docs/research/scrubbing.md)"
        if "notes_scrubbed" in request.fields
        else None,
        "fhir": "dataset.fhir.json: the released rows as a FHIR R4 collection Bundle (research/fhir.py)"
        if "fhir_bundle" in request.fields
        else None,
    }


def dataset_build(
    *,
    actor: Any,
    request_id: int,
    out: Path,
    force: bool = False,
    as_of: date | None = None,
    progress: bool = False,
    chunk_size: int = 500,
) -> Dataset:
    """Build and write the dataset of approved request ``request_id`` into ``out``; see the module doc.

    Raises ``PermissionDenied`` (actor), ``BuildRefused`` (status, directory, cohort too small, k not
    reachable), ``AccessNotRecorded`` (an audit write failed: nothing written).
    """
    if not has_capability(actor, Capability.APPROVE_DATASET):
        raise PermissionDenied("Your role does not allow building datasets.")
    request = DatasetRequest.objects.filter(pk=request_id).first()
    if request is None:
        raise BuildRefused("No such dataset request.")
    if request.status != DatasetRequest.Status.APPROVED:
        raise BuildRefused(f"Only an approved request is built (this one is {request.status}).")
    if request.researcher_id == actor.pk:
        raise PermissionDenied("A request is built by someone other than its researcher.")
    _check_out(out, force=force)
    key = research_pseudonym_key()
    as_of = as_of or timezone.localdate()
    criteria = ResearchCriteria(
        as_of=as_of,
        condition_codes=tuple(request.condition_codes),
        age_min=request.age_min,
        age_max=request.age_max,
        encounters_from=request.encounters_from,
        encounters_to=request.encounters_to,
        sex=request.sex,
    )
    cohort = cohort_for_research(
        actor=actor, request_ref=request.pk, criteria=criteria, sections=_sections(request), chunk_size=chunk_size
    )
    if len(cohort) < request.k:
        raise BuildRefused(f"The cohort is too small: fewer than k={request.k} patients match; nothing is released.")
    columns, hierarchies = _columns(request)
    sensitive = SENSITIVE if "conditions" in request.fields else None
    counts = QuasiIdentifierCounts(hierarchies, sensitive)
    rows: list[dict[str, str]] = []
    observations: list[dict[str, str]] = []
    notes: list[dict[str, str]] = []
    bar = tqdm(total=len(cohort), unit=" patients", file=sys.stderr, disable=not progress, desc="De-identifying")
    with bar:
        for patient in cohort:
            row, rows_of_patient, notes_of_patient = _row(request, patient, key, as_of)
            counts.add(row)
            rows.append(row)
            observations.extend(rows_of_patient)
            notes.extend(notes_of_patient)
            bar.update(1)
    try:
        plan = plan_release(counts, k=request.k, max_suppression=request.max_suppression)
    except KAnonymityRefused as exc:
        raise BuildRefused(str(exc)) from None
    released = list(plan.apply(rows))
    kept = {row["pseudonym"] for row in released}
    observations = [o for o in observations if o["pseudonym"] in kept]
    notes = [n for n in notes if n["pseudonym"] in kept]
    report = {"tier": request.tier, "rows_in_cohort": len(cohort), **asdict(plan.report)}
    # The release is a disclosure: recorded before a byte is written (fail closed).
    research_disclosure_record(actor=actor, request_ref=request.pk, recipient=request.researcher.get_username())
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    written: list[Path] = []
    try:
        written.append(out / "dataset.csv")
        _write_csv(out / "dataset.csv", columns, released)
        written.append(out / "dataset.parquet")
        _write_parquet(out / "dataset.parquet", columns, released)
        written.append(out / "data_dictionary.json")
        _write_json(out / "data_dictionary.json", _dictionary(request, columns, hierarchies))
        written.append(out / "privacy_report.json")
        _write_json(out / "privacy_report.json", report)
        if "observations" in request.fields:
            names = (
                OBSERVATION_COLUMNS if request.tier == DatasetRequest.Tier.SAFE_HARBOR else OBSERVATION_COLUMNS_LIMITED
            )
            written.append(out / "observations.csv")
            _write_csv(out / "observations.csv", names, observations)
            written.append(out / "observations.parquet")
            _write_parquet(out / "observations.parquet", names, observations)
        if "notes_scrubbed" in request.fields:
            note_names = NOTE_COLUMNS if request.tier == DatasetRequest.Tier.SAFE_HARBOR else NOTE_COLUMNS_LIMITED
            written.append(out / "notes.csv")
            _write_csv(out / "notes.csv", note_names, notes)
            written.append(out / "notes.parquet")
            _write_parquet(out / "notes.parquet", note_names, notes)
        if "fhir_bundle" in request.fields:
            written.append(out / "dataset.fhir.json")
            _write_json(out / "dataset.fhir.json", dataset_bundle(released, observations))
        files = [asdict(_digest(path)) for path in written]
        with transaction.atomic():
            locked = DatasetRequest.objects.select_for_update().get(pk=request.pk)
            if locked.status != DatasetRequest.Status.APPROVED:
                raise BuildRefused("The request changed while it was built; nothing is released.")
            dataset = Dataset.objects.create(
                request=locked,
                built_by=actor,
                built_at=timezone.now(),
                rows=len(released),
                privacy_report=report,
                files=files,
            )
            locked.status = DatasetRequest.Status.BUILT
            locked.save(update_fields=["status", "updated_at"])
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    logger.info("Dataset %s of request %s built by user %s: %s rows", dataset.pk, request.pk, actor.pk, len(released))
    return dataset
