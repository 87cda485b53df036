"""Import FHIR R4 transaction/batch bundles (Synthea's, both layouts) into the clinical record.

Each file is read and validated whole (exchange/fhir/validate.py) before its transaction opens (the
next file in a second process while this one is written: :func:`import_paths`); then every resource is
written through records/services (``imported_patient_create``, ``imported_entries_create``), so each
row is encrypted like any record and each is a change event naming the importer. Rows of one kind are
written together (one INSERT of the rows, a COPY on PostgreSQL), in one call of
``imported_entries_create`` per bundle, in the order that lets later kinds point to earlier ones: the
encounters first, then every other kind (the service's checks asked once for all of them, the change
events of all of them in one statement). A row that points to a new encounter holds its unsaved row
and gets its key when it is written; the service checks it is the same patient's. A bundle is one
``transaction.atomic``: an error anywhere in it writes none of it.
Rows carry the blind index of their source id (records.crypto.source_index); a resource already
imported is counted as present and not written again. Two imports of the same bundle at the same time
cannot both write it: the database holds one row per patient and source id (records.models.unique_source),
the second import's INSERT waits for the first to commit and is refused, and the bundle is tried once
more, when it finds the rows the first wrote (:func:`_write_bundle`).

Practitioner and Organization go to the exchange directory (exchange.models.DirectoryEntry): shared
``hospitalInformation*``/``practitionerInformation*`` bundles are imported first from a folder, so
the conditional references of the patient bundles after them resolve. A bundle's directory entries
are looked up in one query and the new ones added in one INSERT, their change history entries
(django-auditlog's, as ``save()`` would have written them) in another (audit/history.py).
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError, IntegrityError, transaction
from tqdm import tqdm

from audit.history import log_created
from exchange.fhir.mapping import DIRECTORY_TYPES, IMPORTED_TYPES, RECORD_TYPES, Extracted
from exchange.fhir.validate import BundleInvalid, Entry, Problem, ValidBundle, read_valid_bundle
from exchange.models import DirectoryEntry
from records.crypto import mrn_index, source_index
from records.models import (
    Allergy,
    Condition,
    DiagnosticReport,
    Encounter,
    ImagingStudy,
    Immunization,
    Medication,
    Observation,
    Patient,
    Procedure,
)
from records.services import DuplicatePatient, RecordNotFound, imported_entries_create, imported_patient_create

logger = logging.getLogger(__name__)

T = TypeVar("T")

SHARED_PREFIXES = ("hospitalInformation", "practitionerInformation")
MODELS: dict[str, Any] = {
    "Encounter": Encounter,
    "Condition": Condition,
    "Observation": Observation,
    "DiagnosticReport": DiagnosticReport,
    "MedicationRequest": Medication,
    "Procedure": Procedure,
    "Immunization": Immunization,
    "AllergyIntolerance": Allergy,
    "ImagingStudy": ImagingStudy,
}
# Written in this order within a bundle: what others point to first.
_ORDER = {name: rank for rank, name in enumerate((*DIRECTORY_TYPES, "Patient", "Encounter"))}


@dataclass
class TypeCounts:
    imported: int = 0
    present: int = 0
    skipped: int = 0


@dataclass
class FileResult:
    path: Path
    problems: list[Problem] = field(default_factory=list)
    resources: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Summary:
    counts: dict[str, TypeCounts] = field(default_factory=dict)
    files: list[FileResult] = field(default_factory=list)

    @property
    def failed(self) -> list[FileResult]:
        return [result for result in self.files if not result.ok]

    def add(self, counts: dict[str, TypeCounts]) -> None:
        for name, count in counts.items():
            total = self.counts.setdefault(name, TypeCounts())
            total.imported += count.imported
            total.present += count.present
            total.skipped += count.skipped


class ImportFailed(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def collect_files(paths: Iterable[Path]) -> list[Path]:
    """The JSON files named or found (not recursively) in the folders named, shared bundles first."""
    found: list[Path] = []
    for path in paths:
        found.extend(sorted(path.glob("*.json")) if path.is_dir() else [path])
    unique = list(dict.fromkeys(found))
    return sorted(unique, key=lambda p: (not p.name.startswith(SHARED_PREFIXES), unique.index(p)))


def known_target(resource_type: str, system: str, value: str) -> bool:
    """Is the target of a conditional reference already in the directory?"""
    return (resource_type, system, value) in known_targets([(resource_type, system, value)])


Target = tuple[str, str, str]  # what a conditional reference names: (type, identifier system, value)


def known_targets(targets: Iterable[Target]) -> set[Target]:
    """The targets of ``targets`` already in the directory, in one query: :func:`known_target` for
    many (the targets a bundle validated ahead asked, checked once that bundle's turn comes)."""
    wanted = {target for target in targets if target[0] in DIRECTORY_TYPES}
    if not wanted:
        return set()
    rows = DirectoryEntry.objects.filter(
        kind__in={kind for kind, _, _ in wanted},
        identifier_system__in={system for _, system, _ in wanted},
        identifier_value__in={value for _, _, value in wanted},
    ).values_list("kind", "identifier_system", "identifier_value")
    return {row for row in rows if row in wanted}


@dataclass(frozen=True)
class _ValidatedAhead:
    """A file validated in the second process, before the directory could be asked: its bundle or its
    refusal, and the conditional targets it did not find in itself (each answered "known")."""

    asked: frozenset[Target]
    outcome: ValidBundle | BundleInvalid


def _validate_ahead(path: Path) -> _ValidatedAhead:
    """Read and validate ``path`` in the second process, without the database.

    That process is a fork of this one: it must not use the database connection it inherited (nor
    could a connection of its own see the bundle being written, not yet committed). So each
    conditional target the bundle does not hold itself is recorded and answered "known" for now;
    :func:`_confirmed` asks the directory about them when the file's turn comes. A refusal is returned,
    to be reported then for this file; any other exception is raised by the future then, as
    read_valid_bundle would have raised it. The resources of the entries written from their extracted
    fields are not sent back (only the directory's are read again): pickling them would cost about as
    much as parsing them."""
    asked: set[Target] = set()

    def known_for_now(resource_type: str, system: str, value: str) -> bool:
        asked.add((resource_type, system, value))
        return True

    try:
        valid = read_valid_bundle(path, known=known_for_now)
    except BundleInvalid as error:
        return _ValidatedAhead(frozenset(asked), error)
    for entry in valid.entries:
        if entry.resource_type not in DIRECTORY_TYPES:
            entry.resource = {}
    return _ValidatedAhead(frozenset(asked), valid)


def _validator_pool(files: list[Path]) -> ProcessPoolExecutor | None:
    """One process to validate files ahead in, forked from this one, or None: a single file, or a
    platform without a safe fork (macOS, Windows), is validated here. The child reads files and runs
    the validation only (no database, no logging, no progress bar), so no lock another thread of this
    one might hold at the fork (tqdm's monitor, say) is ever asked for there; it ends with the pool."""
    if len(files) < 2 or not sys.platform.startswith("linux"):
        return None
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork"))


def _confirmed(path: Path, ahead: _ValidatedAhead | None) -> ValidBundle | BundleInvalid:
    """The validated bundle of ``path`` or its refusal, in the main thread, after the files before it
    are committed (a shared bundle before it may have added the directory entries it points to).

    The answer validated ahead stands when every target it took as known is in the directory: those
    targets are all the directory is asked, so read_valid_bundle with known_target would have answered
    the same. Otherwise (or with nothing validated ahead) the file is validated here with known_target,
    so the problems reported are exactly those of a validation here."""
    if ahead is not None and (not ahead.asked or known_targets(ahead.asked) == ahead.asked):
        return ahead.outcome
    try:
        return read_valid_bundle(path, known=known_target)
    except BundleInvalid as error:
        return error


def import_paths(paths: Iterable[Path], *, actor: Any, progress: bool | None = None) -> Summary:
    """Import every bundle file under ``paths``; one transaction per file. Returns counts and problems.

    While a bundle is written, the next file is read and validated in a second process (issue 12):
    validation is CPU only (JSON parsing, the schema, the extraction), a fifth of the import's time,
    and a thread could not run it beside the writes (the GIL: tried, no gain). That process never
    touches the database (:func:`_validate_ahead`); the conditional targets it could not check are
    checked here, after the bundle before it committed (:func:`_confirmed`). One file at most is
    validated ahead (a bundle may be FHIR_MAX_BUNDLE_BYTES), and on every way out, an exception
    included, the validation ahead is cancelled or waited for and the process ends."""
    summary = Summary()
    files = collect_files(paths)
    pool = _validator_pool(files)
    ahead: Future[_ValidatedAhead] | None = None
    try:
        with (
            tqdm(
                total=len(files), unit="bundle", desc="bundles", disable=progress is False or None, position=0
            ) as bars,
            tqdm(unit="resource", desc="resources", disable=progress is False or None, position=1) as resource_bar,
        ):
            for number, path in enumerate(files):
                result = FileResult(path)
                summary.files.append(result)
                try:
                    # Raises here, for this file, what read_valid_bundle raised there (but a refusal).
                    done = ahead.result() if ahead is not None else None
                except BrokenProcessPool:
                    # The second process died (killed, out of memory): the rest are validated here.
                    logger.warning("FHIR import: the process validating ahead ended; validating in this one")
                    if pool is not None:
                        pool.shutdown(wait=False, cancel_futures=True)
                    pool, done = None, None
                outcome = _confirmed(path, done)
                # Only now: the next file is validated while this one is written. The process is forked
                # at the first submit, after the first file was validated here: it inherits the schema
                # compiled (exchange/fhir/validate.py _schema) instead of compiling it again.
                following = files[number + 1] if number + 1 < len(files) else None
                ahead = pool.submit(_validate_ahead, following) if pool is not None and following else None
                if isinstance(outcome, BundleInvalid):
                    result.problems.extend(outcome.problems)
                else:
                    result.resources = len(outcome.entries)
                    try:
                        counts = _write_bundle(outcome, actor=actor, progress=resource_bar)
                        summary.add(counts)
                    except ImportFailed as error:
                        result.problems.append(error.problem)
                    except DatabaseError as error:
                        # A value the checks above let through and the database refused (PostgreSQL: a
                        # NUL byte, a string over a column's length). The bundle's transaction is undone;
                        # the next files go on. The error's text may quote the value: its type only.
                        result.problems.append(Problem("", f"refused by the database ({type(error).__name__})"))
                if result.problems:
                    # Neither the file's name (Synthea names a file after its patient) nor its contents.
                    logger.warning(
                        "FHIR import: bundle %d of %d refused, %d problem(s)",
                        len(summary.files),
                        len(files),
                        len(result.problems),
                    )
                bars.update(1)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return summary


def _write_bundle(valid: ValidBundle, *, actor: Any, progress: Any) -> dict[str, TypeCounts]:
    """Write one bundle in one transaction, once more if a concurrent import made it refused."""
    start = getattr(progress, "n", 0)

    def write() -> dict[str, TypeCounts]:
        if progress is not None:  # the resources a refused first attempt counted were not written
            progress.update(start - progress.n)
        with transaction.atomic():
            return import_bundle(valid, actor=actor, progress=progress)

    return once_more_if_refused(write, what="A FHIR bundle")


def once_more_if_refused(write: Callable[[], T], *, what: str) -> T:
    """``write()`` (which opens its own transaction); once more if the database refused it on a
    uniqueness or reference check. What the import read (the rows already there) may have been changed
    meanwhile by another import that committed first: read again, in a new transaction, it finds them
    and counts them present. A refusal that was no race is refused the same way the second time."""
    try:
        return write()
    except (ImportFailed, IntegrityError) as error:
        if not _refused_by_a_check(error):
            raise
    logger.info("%s was refused by a uniqueness or reference check; trying it once more", what)
    return write()


def _refused_by_a_check(error: BaseException) -> bool:
    """Whether ``error`` is, or was raised from, the database's refusal on a constraint (IntegrityError)."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, IntegrityError):
            return True
        cause = cause.__cause__
    return False


def _refusal(error: Exception) -> str:
    """Words for a refusal, naming fields but no value (Django's own messages may quote one)."""
    if isinstance(error, DuplicatePatient):
        return "a different patient with this medical record number is already registered"
    if isinstance(error, PermissionDenied):
        return "the importing account may not import records"
    if isinstance(error, RecordNotFound):
        return "the patient it belongs to was not found"
    if isinstance(error, IntegrityError):
        return "refused by the database's checks"
    if isinstance(error, ValidationError) and hasattr(error, "error_dict"):
        return f"refused by the record's checks on: {', '.join(sorted(error.error_dict))}"
    return f"refused ({type(error).__name__})"


class _BundleImport:
    def __init__(self, valid: ValidBundle, *, actor: Any, progress: Any) -> None:
        self.valid = valid
        self.actor = actor
        self.progress = progress
        self.counts: dict[str, TypeCounts] = {}
        # entry index -> primary key of its row (Patient, Encounter) or directory entry
        self.rows: dict[int, int] = {}
        # patient pk -> model -> {source index: pk} of rows already there
        self.existing: dict[int, dict[Any, dict[str, int]]] = {}
        # (entry, unsaved row) of one resource type, written together by flush()
        self.pending: list[tuple[Entry, Any]] = []
        # source indexes waiting in pending (a resource twice in one bundle is written once)
        self.waiting: set[str] = set()
        # entry index -> the unsaved row of a new encounter waiting in pending
        self.new_encounters: dict[int, Encounter] = {}

    def count(self, resource_type: str) -> TypeCounts:
        return self.counts.setdefault(resource_type, TypeCounts())

    def run(self) -> dict[str, TypeCounts]:
        # What others point to first; then each other type's entries together, so they are written in
        # one batch (no imported row points to a row of another type but a patient or an encounter).
        entries = sorted(
            self.valid.entries,
            key=lambda e: (_ORDER.get(e.resource_type, len(_ORDER)), e.resource_type, e.index),
        )
        directory = [entry for entry in entries if entry.resource_type in DIRECTORY_TYPES]
        try:
            self.directory(directory)
        except (ValidationError, PermissionDenied, RecordNotFound, IntegrityError) as error:
            raise ImportFailed(Problem(f"entry[{directory[0].index}].resource", _refusal(error))) from error
        for entry in entries:
            if entry.resource_type in DIRECTORY_TYPES:
                continue  # written above, all at once
            try:
                self.one(entry)
            except (ValidationError, PermissionDenied, RecordNotFound, IntegrityError) as error:
                raise ImportFailed(Problem(f"entry[{entry.index}].resource", _refusal(error))) from error
            if self.progress is not None:
                self.progress.update(1)
        self.flush()
        return self.counts

    def flush(self) -> None:
        """Write the rows waiting through the records write path, in one call: the encounters first (the
        rows that point to a new encounter hold its unsaved row, and get its key when it is written)."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        try:
            imported_entries_create(actor=self.actor, entries=[row for _, row in pending])
        except (ValidationError, PermissionDenied, RecordNotFound, IntegrityError) as error:
            # The service writes kind by kind, in the order of the rows; a kind is refused whole (and
            # with it the bundle): name the first entry of the kind refused, the first without a key.
            first = next((entry for entry, row in pending if row.pk is None), pending[0][0])
            raise ImportFailed(Problem(f"entry[{first.index}].resource", _refusal(error))) from error
        for entry, row in pending:
            if entry.resource_type == "Encounter" and type(row) is Encounter:
                self.rows[entry.index] = row.pk
                self._existing(row.patient_id, Encounter)[row.source_id] = row.pk

    def one(self, entry: Entry) -> None:
        kind = entry.resource_type
        if kind not in IMPORTED_TYPES:
            self.count(kind).skipped += 1
            return
        if kind == "Patient":
            self.patient(entry)
        else:
            self.record(entry)

    def directory(self, entries: list[Entry]) -> None:
        """Find or add the bundle's Practitioners and Organizations: one query for those already in
        the directory, one INSERT of the others (their change history as if each were saved alone)."""
        if not entries:
            return
        wanted: dict[tuple[str, str], Entry] = {}
        for entry in entries:
            wanted.setdefault((entry.resource_type, entry.resource_id), entry)
        found = _directory_known(wanted)
        new = [self._directory_row(entry) for key, entry in wanted.items() if key not in found]
        created: set[tuple[str, str]] = set()
        if new:
            using = DirectoryEntry.objects.db
            try:
                with transaction.atomic(using=using):
                    DirectoryEntry.objects.bulk_create(new)
                    # Each row's change history, as save() would have had django-auditlog write it,
                    # in one INSERT (audit/history.py).
                    log_created(DirectoryEntry, new)
            except IntegrityError:
                # Another import added one of them meanwhile: one by one, as get_or_create does.
                for row in new:
                    existing, was_created = DirectoryEntry.objects.get_or_create(
                        kind=row.kind,
                        source_id=row.source_id,
                        defaults={
                            "identifier_system": row.identifier_system,
                            "identifier_value": row.identifier_value,
                            "name": row.name,
                        },
                    )
                    found[(row.kind, row.source_id)] = existing.pk
                    if was_created:
                        created.add((row.kind, row.source_id))
            else:
                for row in new:
                    found[(row.kind, row.source_id)] = row.pk
                    created.add((row.kind, row.source_id))
        for entry in entries:
            key = (entry.resource_type, entry.resource_id)
            self.rows[entry.index] = found[key]
            counts = self.count(entry.resource_type)
            if key in created and wanted[key] is entry:
                counts.imported += 1
            else:
                counts.present += 1

    @staticmethod
    def _directory_row(entry: Entry) -> DirectoryEntry:
        system, value = "", ""
        for identifier in entry.resource.get("identifier", [])[:1]:
            system, value = str(identifier.get("system", "")), str(identifier.get("value", ""))
        return DirectoryEntry(
            kind=entry.resource_type,
            source_id=entry.resource_id,
            identifier_system=system,
            identifier_value=value,
            name=_extracted(entry).fields["name"],
        )

    def patient(self, entry: Entry) -> None:
        source = source_index("Patient", entry.resource_id)
        fields = dict(_extracted(entry).fields)
        existing = Patient.objects.filter(source_id=source).values_list("pk", "mrn_index").first()
        if existing is not None:
            pk, stored_mrn = existing
            if stored_mrn != mrn_index(str(fields.get("mrn", "")).strip()):
                # An id is unique within its source only ("1", "example"): the same id with another MRN
                # is another person, whose records must not join this patient's.
                raise ImportFailed(
                    Problem(f"entry[{entry.index}].resource.id", "names a patient already imported with another MRN")
                )
            self.rows[entry.index] = pk
            self.count("Patient").present += 1
            return
        patient = imported_patient_create(actor=self.actor, source_id=source, **fields)
        self.rows[entry.index] = patient.pk
        self.existing[patient.pk] = {model: {} for model in MODELS.values()}
        self.count("Patient").imported += 1

    def _pk_of(self, entry: Entry, role: str, wanted: str) -> int | None:
        reference = _extracted(entry).refs.get(role, "")
        if not reference:
            return None
        target = self.valid.resolve(reference)
        if target is None or target.resource_type != wanted or target.index not in self.rows:
            path = "patient" if entry.resource_type in ("Immunization", "AllergyIntolerance") else "subject"
            raise ImportFailed(
                Problem(
                    f"entry[{entry.index}].resource.{path if role == 'patient' else role}.reference",
                    f"does not point to a {wanted} of this bundle",
                )
            )
        return self.rows[target.index]

    def _encounter_of(self, entry: Entry) -> int | Encounter | None:
        """The encounter ``entry`` points to: the key of one written before, or the unsaved row of one
        waiting to be written in the same call (the service checks it is of the same patient)."""
        target = self.valid.resolve(_extracted(entry).refs.get("encounter", ""))
        if target is not None and target.resource_type == "Encounter" and target.index in self.new_encounters:
            return self.new_encounters[target.index]
        return self._pk_of(entry, "encounter", "Encounter")

    def _existing(self, patient_pk: int, model: Any) -> dict[str, int]:
        per_patient = self.existing.setdefault(patient_pk, {})
        if model not in per_patient:
            per_patient[model] = dict(model.objects.filter(patient_id=patient_pk).values_list("source_id", "pk"))
        return per_patient[model]

    def record(self, entry: Entry) -> None:
        model = MODELS[entry.resource_type]
        patient_pk = self._pk_of(entry, "patient", "Patient")
        if patient_pk is None:  # the extractors require a subject or patient reference
            raise ImportFailed(Problem(f"entry[{entry.index}].resource", "names no patient"))
        source = source_index(entry.resource_type, entry.resource_id)
        known = self._existing(patient_pk, model)
        if source in known or source in self.waiting:
            if entry.resource_type == "Encounter" and source in known:
                self.rows[entry.index] = known[source]
            self.count(entry.resource_type).present += 1
            return
        fields = dict(_extracted(entry).fields)
        encounter: dict[str, Any] = {}
        if "encounter" in _extracted(entry).refs:
            target = self._encounter_of(entry)
            encounter = {"encounter": target} if isinstance(target, Encounter) else {"encounter_id": target}
        row = model(patient_id=patient_pk, source_id=source, **encounter)
        for name, value in fields.items():
            setattr(row, name, value)
        self.pending.append((entry, row))
        self.waiting.add(source)
        if type(row) is Encounter:
            self.new_encounters[entry.index] = row
        for number, component in enumerate(_extracted(entry).components):
            part = Observation(
                patient_id=patient_pk,
                **encounter,
                source_id=source_index("Observation", f"{entry.resource_id}#component/{number}"),
                panel=row,
                category=fields["category"],
                status=fields["status"],
                effective_at=fields["effective_at"],
                **component,
            )
            self.pending.append((entry, part))
        self.count(entry.resource_type).imported += 1


def _directory_known(wanted: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """The primary keys of the directory entries already there, by (kind, source id), in one query."""
    keys = set(wanted)
    rows = DirectoryEntry.objects.filter(
        kind__in={kind for kind, _ in keys}, source_id__in={source_id for _, source_id in keys}
    ).values_list("pk", "kind", "source_id")
    return {(kind, source_id): pk for pk, kind, source_id in rows if (kind, source_id) in keys}


def _extracted(entry: Entry) -> Extracted:
    # validate_bundle extracted every entry of an imported type; an entry without is a caller's bug.
    if entry.extracted is None:
        raise ImportFailed(Problem(f"entry[{entry.index}].resource", "was not validated"))
    return entry.extracted


def import_bundle(valid: ValidBundle, *, actor: Any, progress: Any = None) -> dict[str, TypeCounts]:
    """Write one validated bundle (call it inside ``transaction.atomic``); per-type counts."""
    return _BundleImport(valid, actor=actor, progress=progress).run()


def source_counts(bundle: dict[str, Any]) -> Counter[str]:
    """How many resources of each type a parsed bundle holds (for summaries and tests)."""
    return Counter(entry["resource"]["resourceType"] for entry in bundle.get("entry", []))


__all__ = ["RECORD_TYPES", "Summary", "collect_files", "import_bundle", "import_paths", "source_counts"]
