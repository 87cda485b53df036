"""Shared steps of the read path: refusals, reporting an access (fail closed), paging, and the rows built from models."""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache, update_wrapper
from typing import Any, Generic, ParamSpec, TypeVar

from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models import BooleanField, Count, ExpressionWrapper, Field, Model, Q, QuerySet, Subquery

from accounts.models import User
from healthcrypt import shaped
from records.models import Attachment, BreakGlassGrant, ClinicalNote, Observation, Order, Patient
from records.permissions import AccessDecision
from records.selectors.read_models import (
    GRANT_FIELDS,
    AttachmentRow,
    Demographics,
    GrantInfo,
    NoteRow,
    ObservationRow,
    OrderRow,
    Page,
    PatientSummary,
    _grant_info,
)
from records.signals import patient_data_accessed

logger = logging.getLogger(__name__)


class AccessRefused(Exception):
    """The policy said no. ``status`` is 403 (role too weak) or 404 (no relationship: no existence leak)."""

    def __init__(self, decision: AccessDecision) -> None:
        super().__init__(decision.explanation)
        self.status = decision.status
        self.explanation = decision.explanation


class AccessNotRecorded(Exception):
    """The audit trail could not record the access, so nothing is shown (fail closed)."""


# --- Rows built from models -----------------------------------------------------------------------


@cache
def _labels(model: type[Model], field_name: str) -> dict[Any, str]:
    """A choice field's labels by stored value. ``get_FOO_display`` flattens the choices again for
    every value; on a chart of a few hundred rows that was a measurable share of the page (issue 11).
    The labels are plain strings (no translation), so one dict per field serves every request."""
    field = model._meta.get_field(field_name)
    assert isinstance(field, Field)  # noqa: S101 (a choice column of the model, never a relation)
    return {value: str(label) for value, label in field.flatchoices}


def _display(instance: Model, field_name: str) -> str:
    """What ``instance.get_<field_name>_display()`` returns, from the cached labels."""
    value = getattr(instance, field_name)
    return _labels(type(instance), field_name).get(value, value)  # type: ignore[no-any-return]


def _name(user: User | None) -> str:
    if user is None:
        return ""
    return user.display_name


def _with_staff(queryset: QuerySet[Any], *relations: str) -> QuerySet[Any]:
    """Join the staff members a section names, loading only their names (not whole user rows)."""
    names = [
        f"{relation}__{field}" for relation in relations for field in ("first_name", "last_name", "username", "role")
    ]
    own = [f.name for f in queryset.model._meta.concrete_fields]
    return queryset.select_related(*relations).only(*own, *names)


def _record(
    *,
    actor: Any,
    patient_ids: Sequence[int | None],
    category: str | Sequence[str],
    action: str,
    purpose: str,
    explanation: str = "",
    detail: dict[str, Any] | None = None,
    patients: Sequence[Patient] = (),
) -> None:
    """Report accesses: one signal for every patient and section shown; a failure becomes AccessNotRecorded.

    ``patients``: the rows of these patients the policy already read (sealed: nothing decrypted), sent
    along so that the anomaly rules need not read them again (issue 11).
    """
    categories = (category,) if isinstance(category, str) else tuple(category)
    if not patient_ids:
        return
    try:
        # No savepoint of its own inside a request's transaction (ATOMIC_REQUESTS): a failure marks
        # that transaction for rollback and AccessNotRecorded ends the request, so nobody carries on
        # in it; the savepoint only cost two statements per page (issue 11). Outside a transaction
        # this is still one transaction of its own.
        with transaction.atomic(savepoint=False):
            patient_data_accessed.send(
                sender=Patient,
                actor=actor,
                patient_id=patient_ids[0] if len(patient_ids) == 1 else None,
                patient_ids=tuple(patient_ids),
                category=categories[0],
                categories=categories,
                action=action,
                purpose=purpose,
                explanation=explanation,
                detail=detail or {},
                patients=tuple(patients),
            )
    except Exception as exc:
        logger.exception("Access could not be recorded; nothing was shown (actor=%s)", getattr(actor, "pk", None))
        raise AccessNotRecorded from exc


# --- Reads in steps: the access first, then the rest (one event per patient per page) -------------


@dataclass(frozen=True)
class Access:
    """An access a read is about to make, as ``_record`` is told it. A read written in steps (a
    generator) yields it where it would call ``_record``: before it decrypts anything, and goes on
    only once it is recorded. That lets a page of several reads (a dashboard's panels) record all
    their accesses as one event per patient (DESIGN.md §4) before any of them decrypts."""

    actor: Any
    patient_ids: Sequence[int | None]
    category: str | Sequence[str]
    action: str
    purpose: str
    explanation: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    patients: Sequence[Patient] = ()

    @property
    def categories(self) -> tuple[str, ...]:
        return (self.category,) if isinstance(self.category, str) else tuple(self.category)

    def record(self) -> None:
        _record(
            actor=self.actor,
            patient_ids=self.patient_ids,
            category=self.category,
            action=self.action,
            purpose=self.purpose,
            explanation=self.explanation,
            detail=self.detail,
            patients=self.patients,
        )


T = TypeVar("T")
# A read in steps: yields each Access before going on, returns what the read returns.
Steps = Generator[Access, None, T]


def recorded(steps: Steps[T], pending: Access | None = None) -> T:
    """Run a read in steps to its end, recording each access it yields before it goes on (the read
    as one call: ``recorded(my_patients_steps(...))`` is ``my_patients(...)``). ``pending``: an
    access it yielded already, recorded by the caller: resumed from there."""
    try:
        access = next(steps) if pending is None else steps.send(None)
        while True:
            access.record()
            access = steps.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        steps.close()  # a refusal or a failed record leaves nothing suspended


P = ParamSpec("P")


class InSteps(Generic[P, T]):
    """A read written in steps, callable as one read: ``read(...)`` runs it to its end, recording each
    access as it comes (``recorded``); ``read.steps(...)`` is the generator, for a page that runs
    several reads together (``run_together``). Applied as a decorator: ``@in_steps``."""

    def __init__(self, steps: Callable[P, Steps[T]]) -> None:
        self.steps = steps
        update_wrapper(self, steps)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T:
        return recorded(self.steps(*args, **kwargs))


in_steps = InSteps


def _merged(accesses: Sequence[Access], *, page: str) -> list[Access]:
    """The accesses of one page as one access per patient (an access naming no patient, a search's
    own event, is kept as it is). A patient's access lists every section the reads that showed them
    named, the first read's section first; its action and purpose are the first read's, its
    explanation the first one given (a list of "my patients" gives none, the ward's list "ward");
    its detail names the page and, in order, the lists it was in (``{"list": page, "lists": [...]}``),
    with the grants any of them named, and every purpose when they differ. Patients whose accesses
    came out the same are recorded together (one INSERT)."""
    actors = {getattr(access.actor, "pk", access.actor) for access in accesses}
    if len(actors) > 1:
        raise ValueError("One page's accesses are one person's.")
    rows: dict[int, Patient] = {}
    by_patient: dict[int, list[Access]] = {}
    kept: list[Access] = []
    for access in accesses:
        rows.update({row.pk: row for row in access.patients})
        if None in access.patient_ids:
            kept.append(access)
            continue
        for patient_id in access.patient_ids:
            by_patient.setdefault(int(patient_id), []).append(access)  # type: ignore[arg-type]
    # Patients whose merged access comes out the same: one access (one INSERT) for them all.
    shapes: dict[tuple[Any, ...], tuple[Access, list[int]]] = {}
    for patient_id, listed in by_patient.items():
        first = listed[0]
        categories = tuple(dict.fromkeys(name for access in listed for name in access.categories))
        detail: dict[str, Any] = {"list": page, "lists": [str(access.detail.get("list", "")) for access in listed]}
        grants = sorted({grant for access in listed for grant in access.detail.get("grant_ids", ())})
        if grants:
            detail["grant_ids"] = grants
        purposes = sorted({access.purpose for access in listed})
        if len(purposes) > 1:
            detail["purposes"] = purposes
        explanation = next((access.explanation for access in listed if access.explanation), "")
        key = (categories, first.action, first.purpose, explanation, repr(sorted(detail.items())))
        shape = Access(
            actor=first.actor,
            patient_ids=(),
            category=categories,
            action=first.action,
            purpose=first.purpose,
            explanation=explanation,
            detail=detail,
        )
        shapes.setdefault(key, (shape, []))[1].append(patient_id)
    for shape, patient_ids in shapes.values():
        kept.append(replace(shape, patient_ids=patient_ids, patients=[rows[pk] for pk in patient_ids if pk in rows]))
    return kept


def run_together(reads: Sequence[Steps[Any]], *, page: str) -> list[Any]:
    """Run several reads of one page so that their accesses are recorded together, one event per
    patient (``_merged``), before any of them goes on to decrypt: each read runs to its first access
    (or its end), then all the accesses are recorded, then each read is resumed. An access a read
    yields after that (a second step) is recorded on its own. Returns each read's result, in order.
    A refusal or a failed record ends them all: nothing decrypted leaves this function."""
    results: list[Any] = [None] * len(reads)
    waiting: dict[int, Access] = {}
    try:
        for index, steps in enumerate(reads):
            try:
                waiting[index] = next(steps)
            except StopIteration as done:
                results[index] = done.value
        for access in _merged(list(waiting.values()), page=page):
            access.record()
        for index in waiting:
            results[index] = recorded(reads[index], pending=waiting[index])
    finally:
        for steps in reads:
            steps.close()
    return results


def _page_number(raw: object) -> int:
    try:
        return max(1, int(str(raw)))
    except (TypeError, ValueError):
        return 1


def _page_query(
    rows: QuerySet[Any], ordering: tuple[str, ...], number: int, per_page: int, also: QuerySet[Any] | None
) -> QuerySet[Any]:
    """Page ``number`` of ``rows``, the section's total and the rows of ``also``, as one query."""
    start = (number - 1) * per_page
    on_page = rows.order_by(*ordering).values("pk")[start : start + per_page]
    wanted = Q(pk__in=on_page)
    extra: dict[str, Any] = {}
    if also is not None:
        wanted |= Q(pk__in=also.values("pk"))
        extra["in_also"] = ExpressionWrapper(Q(pk__in=also.values("pk")), output_field=BooleanField())
    # Counted in the same statement (an uncorrelated subquery, run once), not in a query of its own.
    total = rows.order_by().values("patient_id").annotate(n=Count("pk")).values("n")
    query: QuerySet[Any] = (
        rows.filter(wanted)
        .annotate(
            section_total=Subquery(total),
            on_page=ExpressionWrapper(Q(pk__in=on_page), output_field=BooleanField()),
            **extra,
        )
        .order_by(*ordering)
    )
    return query


def _paged(
    rows: QuerySet[Any],
    ordering: tuple[str, ...],
    raw_page: object,
    per_page: int,
    *,
    also: QuerySet[Any] | None = None,
) -> tuple[Page, list[Any], list[Any]]:
    """One page of a patient's section, its total and, optionally, the rows of ``also``: one query.

    ``rows`` is the section (one patient's rows, relations joined); ``also`` a bounded, ordered
    subset of it wanted as well (the chart's trend readings), returned apart, in ``ordering``.
    The page, the count and ``also`` used to be three queries. A page past the end (an old link)
    shows the last page, as before, at the cost of a count and one more read in that case only.
    """
    number = _page_number(raw_page)
    found = list(_page_query(rows, ordering, number, per_page, also))
    if _past_the_end(found, number):
        return _last_page(rows, ordering, number, per_page, also)
    return _page_of(found, number, per_page, also is not None)


def _past_the_end(found: list[Any], number: int) -> bool:
    return number > 1 and not any(r.on_page for r in found)


def _page_of(found: list[Any], number: int, per_page: int, with_also: bool) -> tuple[Page, list[Any], list[Any]]:
    """The page, its rows and ``also``'s, from the rows of :func:`_page_query`."""
    count = found[0].section_total if found else 0
    also_rows = [r for r in found if with_also and r.in_also]
    return Page(number, per_page, count or 0), [r for r in found if r.on_page], also_rows


def _last_page(
    rows: QuerySet[Any], ordering: tuple[str, ...], number: int, per_page: int, also: QuerySet[Any] | None
) -> tuple[Page, list[Any], list[Any]]:
    """For a page past the end (an old link): the last page instead."""
    last = Page(1, per_page, rows.count()).num_pages
    if last < number:
        return _paged(rows, ordering, last, per_page, also=also)
    return _page_of(list(_page_query(rows, ordering, number, per_page, also)), number, per_page, also is not None)


# The pages of a chart's sections compiled once per shape (healthcrypt/shaped.py): building and
# compiling a page's query (three subqueries) cost about 2 ms of CPU, running it far less (issue 11).
# Kept for the first pages only: the page number is in the SQL (OFFSET), so each page is its own
# shape, and a number from the URL must not grow the cache without bound.
_PAGE_SHAPES = "_healthcrypt_page_shapes"
KEPT_PAGES = 5


def _paged_shaped(
    key: Hashable | None,
    build: Callable[..., tuple[QuerySet[Any], QuerySet[Any] | None]],
    values: Mapping[str, Any],
    ordering: tuple[str, ...],
    raw_page: object,
    per_page: int,
) -> tuple[Page, list[Any], list[Any]]:
    """:func:`_paged` of ``build(**values)`` (the section's rows and ``also``), compiled once per
    ``key`` and page. ``build`` must give the same query for any values (names of
    ``healthcrypt.shaped.PLACEHOLDERS``); ``key`` names everything else that shapes it, or is None
    for a query that is not to be kept (one scoped to an order's ids). Every value must be bound in
    the SQL, or the shape is not kept and the query is built each time."""
    number = _page_number(raw_page)

    def page_query(**values: Any) -> QuerySet[Any]:
        rows, also = build(**values)
        return _page_query(rows, ordering, number, per_page, also)

    kept = key is not None and number <= KEPT_PAGES
    compiled = (
        shaped.shape(_PAGE_SHAPES, (key, ordering, per_page, number), page_query, values, alias=DEFAULT_DB_ALIAS)
        if kept
        else None
    )
    if compiled is None:
        rows, also = build(**values)
        return _paged(rows, ordering, number, per_page, also=also)
    found = shaped.instances(compiled, values, DEFAULT_DB_ALIAS)
    if _past_the_end(found, number):
        rows, also = build(**values)
        return _last_page(rows, ordering, number, per_page, also)
    return _page_of(found, number, per_page, "in_also" in compiled.compiler.annotation_col_map)


def _summary(p: Patient) -> PatientSummary:
    return PatientSummary(
        p.pk, p.mrn, p.given_name, p.family_name, p.birth_date, p.sex, p.is_confidential, registered_at=p.created_at
    )


# row_uid: the encrypted fields are opened with it; without it each patient would cost one more query.
SUMMARY_FIELDS = (
    "id",
    "row_uid",
    "mrn",
    "given_name",
    "family_name",
    "birth_date",
    "sex",
    "is_confidential",
    "created_at",
)


def _demographics(p: Patient) -> Demographics:
    return Demographics(
        p.pk,
        p.mrn,
        p.given_name,
        p.family_name,
        p.birth_date,
        p.sex,
        p.is_confidential,
        address_line=p.address_line,
        city=p.city,
        state=p.state,
        postal_code=p.postal_code,
        phone=p.phone,
        email=p.email,
        national_id_last4=p.national_id[-4:] if p.national_id else "",
        emergency_contact_name=p.emergency_contact_name,
        emergency_contact_phone=p.emergency_contact_phone,
        deceased_date=p.deceased_date,
    )


def _order_row(o: Order) -> OrderRow:
    return OrderRow(
        o.pk,
        o.patient_id,
        _display(o, "kind"),
        o.status,
        o.priority,
        _display(o, "priority"),
        o.description,
        o.code,
        o.reason,
        o.department.name,
        _name(o.ordered_by),
        o.ordered_at,
        o.completed_at,
    )


def _grant_detail(decision: AccessDecision) -> dict[str, Any] | None:
    return {"grant_id": decision.grant_id} if decision.grant_id is not None else None


def _decision_grant(decision: AccessDecision) -> GrantInfo | None:
    if decision.grant_id is None:
        return None
    # The policy fetched the grant already: no second read of the same row.
    grant = decision.grant or BreakGlassGrant.objects.only(*GRANT_FIELDS).get(pk=decision.grant_id)
    return _grant_info(grant)


def _observation_row(o: Observation) -> ObservationRow:
    return ObservationRow(
        o.pk,
        _display(o, "category"),
        o.display,
        o.value,
        o.unit,
        o.loinc_code,
        o.effective_at,
        _name(o.recorded_by),
        o.order_id,
        o.interpretation or "",
        o.reference_range or "",
    )


def _note_row(n: ClinicalNote) -> NoteRow:
    return NoteRow(n.pk, _display(n, "kind"), _name(n.author), n.signed_at, n.text, n.amends_id, n.order_id)


def _attachment_row(a: Attachment) -> AttachmentRow:
    return AttachmentRow(
        a.pk,
        _display(a, "kind"),
        a.filename,
        a.content_type,
        a.description,
        a.size,
        _name(a.uploaded_by),
        a.uploaded_at,
        a.order_id,
    )
