"""The audited read behind research datasets (issue 13, DESIGN.md §4 and §10).

Who reads: the compliance officer who builds an approved request (capability ``approve_dataset``,
``manage.py deid_export --actor``). The researcher never triggers a read of identified data: they
receive the de-identified files only. ``records`` does not import ``research``; the caller passes
plain criteria values and the request's id (``request_ref``), and has checked that the request is
approved (research/build.py).

Two steps, each audited before anything is decrypted:

1. ``cohort_for_research`` screens candidates. The date range of encounters is applied in SQL
   (encounter times are not encrypted); sex, age and condition codes are encrypted, so they can only
   be judged after decryption. For each chunk of candidates one access event per patient is
   written first (action ``research_screen``, purpose ``research``, the sections the criteria read),
   then only those fields are decrypted. It returns a ``ResearchCohort``: the included patients'
   ids (ids, not data) and the sections to read.
2. Iterating the cohort reads the included patients in chunks of ``chunk_size``: for each chunk,
   one access event per patient (action ``research``, purpose ``research``, the sections read,
   ``detail`` naming the request) is written, and only then are the chunk's rows decrypted, with
   one query per section per chunk (no query per patient).

``research_disclosure_record`` writes the one disclosure event of a dataset (no patient: the
release as a whole, naming the recipient and the request), before the files are written;
``research_download_record`` one more each time the researcher downloads them, before they are served.

An audit write that fails raises ``AccessNotRecorded`` and nothing more is decrypted (fail closed).
"""

from __future__ import annotations

import datetime
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Min

from accounts.roles import Capability, DataCategory, has_capability
from records.models import ClinicalNote, Condition, Encounter, Medication, Observation, Patient
from records.permissions import AccessDecision
from records.selectors.access import AccessNotRecorded, AccessRefused, _record
from records.signals import disclosure_made

D = DataCategory

RESEARCH_PURPOSE = "research"
SCREEN_ACTION = "research_screen"
READ_ACTION = "research"
RESEARCH_EXPLANATION = "approved_research_request"
# The disclosure event's category: a de-identified dataset (its sections are in the access events).
DISCLOSURE_CATEGORY = "research_dataset"
RESEARCH_SECTIONS = frozenset({D.DEMOGRAPHICS, D.ENCOUNTERS, D.CONDITIONS, D.OBSERVATIONS, D.MEDICATIONS, D.NOTES})
DEFAULT_CHUNK = 500


@dataclass(frozen=True)
class ResearchCriteria:
    """A cohort, as plain values. Ages are whole years on ``as_of``; empty values select everyone."""

    as_of: datetime.date
    condition_codes: tuple[str, ...] = ()
    age_min: int | None = None
    age_max: int | None = None
    encounters_from: datetime.date | None = None
    encounters_to: datetime.date | None = None
    sex: str = ""


@dataclass(frozen=True)
class ResearchCondition:
    code: str
    onset_date: datetime.date | None


@dataclass(frozen=True)
class ResearchObservation:
    loinc_code: str
    value: str
    unit: str
    effective_at: datetime.datetime


@dataclass(frozen=True)
class ResearchMedication:
    code: str
    prescribed_at: datetime.datetime


@dataclass(frozen=True)
class ResearchNote:
    """A signed note, for scrubbing (research/scrub): never released as read. ``author`` is the
    author's name as the record shows it, an identifier the scrubber must know."""

    kind: str
    text: str
    signed_at: datetime.datetime
    author: str


@dataclass(frozen=True)
class ResearchPatient:
    """One included patient: the demographics ``research.safe_harbor.PatientDemographics`` takes (the
    same names), the earliest encounter, and the rows of the sections read (empty when not read)."""

    uid: uuid.UUID
    mrn: str
    given_name: str
    family_name: str
    birth_date: datetime.date
    sex: str
    address_line: str
    city: str
    postal_code: str
    state: str
    phone: str
    email: str
    national_id: str
    emergency_contact_name: str
    emergency_contact_phone: str
    deceased_date: datetime.date | None
    first_encounter: datetime.date | None
    conditions: tuple[ResearchCondition, ...] = ()
    observations: tuple[ResearchObservation, ...] = ()
    medications: tuple[ResearchMedication, ...] = ()
    notes: tuple[ResearchNote, ...] = ()


def _age(birth: datetime.date, on: datetime.date) -> int:
    return on.year - birth.year - int((on.month, on.day) < (birth.month, birth.day))


def _chunks(ids: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def _require_builder(actor: Any) -> None:
    if actor is None or not has_capability(actor, Capability.APPROVE_DATASET):
        raise AccessRefused(AccessDecision.forbidden("role_may_not_build_datasets"))


def _candidates(criteria: ResearchCriteria) -> list[int]:
    patients = Patient.objects.all()
    if criteria.encounters_from or criteria.encounters_to:
        encounters = Encounter.objects.all()
        if criteria.encounters_from:
            encounters = encounters.filter(starts_at__date__gte=criteria.encounters_from)
        if criteria.encounters_to:
            encounters = encounters.filter(starts_at__date__lte=criteria.encounters_to)
        patients = patients.filter(pk__in=encounters.values("patient_id"))
    return list(patients.order_by("pk").values_list("pk", flat=True))


@dataclass(frozen=True)
class ResearchCohort:
    """The patients a request includes (ids only) and how to read them, audited, chunk by chunk."""

    actor: Any
    request_ref: int
    patient_ids: tuple[int, ...]
    sections: frozenset[DataCategory]
    chunk_size: int = DEFAULT_CHUNK

    def __len__(self) -> int:
        return len(self.patient_ids)

    def __iter__(self) -> Iterator[ResearchPatient]:
        for chunk in _chunks(self.patient_ids, self.chunk_size):
            with transaction.atomic():
                _record(
                    actor=self.actor,
                    patient_ids=chunk,
                    category=sorted(self.sections),
                    action=READ_ACTION,
                    purpose=RESEARCH_PURPOSE,
                    explanation=RESEARCH_EXPLANATION,
                    detail={"request": self.request_ref},
                )
            # Only now is anything of this chunk decrypted.
            yield from _read_chunk(chunk, self.sections)


def cohort_for_research(
    *,
    actor: Any,
    request_ref: int,
    criteria: ResearchCriteria,
    sections: frozenset[DataCategory],
    chunk_size: int = DEFAULT_CHUNK,
) -> ResearchCohort:
    """Screen the patients matching ``criteria`` for the approved request ``request_ref``.

    Raises ``AccessRefused`` (403) for an actor without ``approve_dataset`` and ``AccessNotRecorded``
    when a screening event cannot be written. Returns the cohort, to be iterated once (each iteration
    is a read of the included patients, audited per chunk).
    """
    _require_builder(actor)
    if not sections or not sections <= RESEARCH_SECTIONS or D.DEMOGRAPHICS not in sections:
        raise ValueError("A research read names its sections, demographics among them.")
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive.")
    codes = {code.strip().upper() for code in criteria.condition_codes}
    screen_sections = [D.DEMOGRAPHICS] + ([D.CONDITIONS] if codes else [])
    included: list[int] = []
    for chunk in _chunks(_candidates(criteria), chunk_size):
        with transaction.atomic():
            _record(
                actor=actor,
                patient_ids=chunk,
                category=screen_sections,
                action=SCREEN_ACTION,
                purpose=RESEARCH_PURPOSE,
                explanation=RESEARCH_EXPLANATION,
                detail={"request": request_ref},
            )
        with_condition: set[int] = set()
        if codes:
            for row in Condition.objects.filter(patient_id__in=chunk).only("id", "row_uid", "patient_id", "code"):
                if row.code.strip().upper() in codes:
                    with_condition.add(row.patient_id)
        rows = Patient.objects.filter(pk__in=chunk).only("id", "row_uid", "birth_date", "sex").order_by("pk")
        for patient in rows:
            if codes and patient.pk not in with_condition:
                continue
            if criteria.sex and patient.sex != criteria.sex:
                continue
            if criteria.age_min is not None or criteria.age_max is not None:
                age = _age(patient.birth_date, criteria.as_of)
                if criteria.age_min is not None and age < criteria.age_min:
                    continue
                if criteria.age_max is not None and age > criteria.age_max:
                    continue
            included.append(patient.pk)
    return ResearchCohort(actor, request_ref, tuple(included), frozenset(sections), chunk_size)


def research_disclosure_record(*, actor: Any, request_ref: int, recipient: str) -> None:
    """Record the one disclosure of a research dataset (no patient: the release as a whole).

    Raises ``AccessNotRecorded`` when it cannot be written: then nothing may be released.
    """
    _require_builder(actor)
    try:
        with transaction.atomic():
            disclosure_made.send(
                sender=Patient,
                actor=actor,
                patient_id=None,
                recipient=f"{recipient} (research request {request_ref})"[:200],
                category=DISCLOSURE_CATEGORY,
                purpose=RESEARCH_PURPOSE,
            )
    except Exception as exc:
        raise AccessNotRecorded from exc


def research_download_record(*, actor: Any, request_ref: int, dataset_ref: int) -> None:
    """Record a researcher's download of their dataset's files: a disclosure to them (no patient).

    Written before a byte is served; raises ``AccessNotRecorded`` when it cannot be written (then
    nothing is served) and ``AccessRefused`` for a role that does not request datasets.
    """
    if actor is None or not has_capability(actor, Capability.REQUEST_DATASET):
        raise AccessRefused(AccessDecision.forbidden("role_may_not_download_datasets"))
    try:
        with transaction.atomic():
            disclosure_made.send(
                sender=Patient,
                actor=actor,
                patient_id=None,
                recipient=f"{actor.get_username()} (research request {request_ref}, dataset {dataset_ref}, download)"[
                    :200
                ],
                category=DISCLOSURE_CATEGORY,
                purpose=RESEARCH_PURPOSE,
            )
    except Exception as exc:
        raise AccessNotRecorded from exc


def _read_chunk(chunk: list[int], sections: frozenset[DataCategory]) -> Iterator[ResearchPatient]:
    first = dict(
        Encounter.objects.filter(patient_id__in=chunk)
        .order_by()
        .values("patient_id")
        .annotate(first=Min("starts_at"))
        .values_list("patient_id", "first")
    )
    conditions: defaultdict[int, list[ResearchCondition]] = defaultdict(list)
    if D.CONDITIONS in sections:
        for c in Condition.objects.filter(patient_id__in=chunk).order_by("patient_id", "recorded_at", "pk"):
            conditions[c.patient_id].append(ResearchCondition(c.code, c.onset_date))
    observations: defaultdict[int, list[ResearchObservation]] = defaultdict(list)
    if D.OBSERVATIONS in sections:
        query = Observation.objects.filter(patient_id__in=chunk).order_by("patient_id", "effective_at", "pk")
        for o in query.only("id", "row_uid", "patient_id", "loinc_code", "value", "unit", "effective_at"):
            observations[o.patient_id].append(ResearchObservation(o.loinc_code, o.value, o.unit, o.effective_at))
    medications: defaultdict[int, list[ResearchMedication]] = defaultdict(list)
    if D.MEDICATIONS in sections:
        prescriptions = Medication.objects.filter(patient_id__in=chunk).order_by("patient_id", "prescribed_at", "pk")
        for m in prescriptions.only("id", "row_uid", "patient_id", "code", "prescribed_at"):
            medications[m.patient_id].append(ResearchMedication(m.code, m.prescribed_at))
    notes: defaultdict[int, list[ResearchNote]] = defaultdict(list)
    if D.NOTES in sections:
        written = ClinicalNote.objects.filter(patient_id__in=chunk).select_related("author")
        for n in written.order_by("patient_id", "signed_at", "pk"):
            author = " ".join(part for part in (n.author.first_name, n.author.last_name) if part)
            notes[n.patient_id].append(ResearchNote(n.kind, n.text, n.signed_at, author))
    for p in Patient.objects.filter(pk__in=chunk).order_by("pk"):
        started = first.get(p.pk)
        yield ResearchPatient(
            uid=p.row_uid,
            mrn=p.mrn,
            given_name=p.given_name,
            family_name=p.family_name,
            birth_date=p.birth_date,
            sex=p.sex,
            address_line=p.address_line,
            city=p.city,
            postal_code=p.postal_code,
            state=p.state,
            phone=p.phone,
            email=p.email,
            national_id=p.national_id,
            emergency_contact_name=p.emergency_contact_name,
            emergency_contact_phone=p.emergency_contact_phone,
            deceased_date=p.deceased_date,
            first_encounter=started.date() if started is not None else None,
            conditions=tuple(conditions[p.pk]),
            observations=tuple(observations[p.pk]),
            medications=tuple(medications[p.pk]),
            notes=tuple(notes[p.pk]),
        )
