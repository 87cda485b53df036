"""Who may open which patient's record, and why (DESIGN.md §3).

The role table (accounts/roles.py) says what kind of access a role has; these pure-ish functions
check the *relationship* that access needs for one particular patient: an active care-team
assignment, an encounter where the user is attending, an open stay on the nurse's ward, an open
order for the user's department, the patient's own record, an active break-the-glass grant (the
only way in for ems; the fallback for other roles with ``break_glass`` when nothing else applies). Every decision carries its explanation,
which the audit trail stores with the access ("why").

No relationship: 404 (the record's existence is not confirmed). Role too weak: 403.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, assert_never

from django.db import DEFAULT_DB_ALIAS
from django.db.models import Exists, OuterRef, Q, QuerySet, Value
from django.utils import timezone

from accounts.roles import Capability, ChartAccess, DataCategory, Role, policy_for
from healthcrypt import shaped
from records.models import BreakGlassGrant, CareAssignment, Encounter, Order, Patient

ORDER_KIND_FOR_ROLE = {Role.RADIOLOGY: Order.Kind.RADIOLOGY, Role.LAB: Order.Kind.LAB}


@dataclass(frozen=True)
class AccessDecision:
    """The outcome of a policy check. ``status`` is the HTTP status a refusal maps to."""

    allowed: bool
    status: int
    explanation: str
    categories: frozenset[DataCategory] = frozenset()
    order_ids: tuple[int, ...] = ()
    # The break-the-glass grant that allowed it (explanation "break_glass"), for the audit detail,
    # and its row (the fields the banner shows), so that the chart need not fetch it a second time.
    grant_id: int | None = None
    grant: BreakGlassGrant | None = field(default=None, compare=False, repr=False)
    # The patient's row, when the caller asked for it (``with_patient``) and the policy read it anyway
    # to decide: still sealed (an encrypted value is opened only when read, healthcrypt/fields.py),
    # so that the chart, which reads the row once the access is recorded, need not fetch it again.
    patient: Patient | None = field(default=None, compare=False, repr=False)

    @classmethod
    def forbidden(cls, why: str) -> AccessDecision:
        return cls(False, 403, why)

    @classmethod
    def not_found(cls) -> AccessDecision:
        return cls(False, 404, "no_relationship")


def active_assignments(at: datetime.datetime) -> Q:
    """Care-team assignments in force at ``at``."""
    return Q(starts_at__lte=at) & (Q(ends_at__isnull=True) | Q(ends_at__gt=at))


def open_encounters() -> Q:
    return Q(status__in=[Encounter.Status.PLANNED, Encounter.Status.IN_PROGRESS])


def active_grants(at: datetime.datetime) -> Q:
    """Break-the-glass grants in force at ``at``: not ended early and not expired."""
    return Q(ended_at__isnull=True, granted_at__lte=at, expires_at__gt=at)


# The columns of a grant a decision carries: what the banner shows, never the free-text explanation.
GRANT_COLUMNS = ("id", "patient_id", "reason", "granted_at", "expires_at")


def active_grant(
    user: Any, patient_id: int, *, at: datetime.datetime | None = None, with_patient: bool = False
) -> BreakGlassGrant | None:
    """``user``'s grant for this one patient in force at ``at`` (GRANT_COLUMNS only, and with
    ``with_patient`` the patient's row joined, sealed), or None. Never widens: the grant names the
    patient, and another patient's id finds nothing."""
    at = at or timezone.now()
    grants = BreakGlassGrant.objects.filter(active_grants(at), user_id=user.pk, patient_id=patient_id)
    if with_patient:
        patient_columns = [f"patient__{f.name}" for f in Patient._meta.concrete_fields]
        grants = grants.select_related("patient").only(*GRANT_COLUMNS, *patient_columns)
    else:
        grants = grants.only(*GRANT_COLUMNS)
    return grants.order_by("-expires_at").first()


def _break_glass(
    user: Any, policy: Any, patient_id: int, at: datetime.datetime, *, with_patient: bool = False
) -> AccessDecision:
    """An active grant as the relationship, for roles with ``break_glass``; else 404."""
    if Capability.BREAK_GLASS in policy.capabilities:
        grant = active_grant(user, patient_id, at=at, with_patient=with_patient)
        if grant is not None:
            return AccessDecision(
                True,
                200,
                "break_glass",
                policy.categories,
                grant_id=grant.pk,
                grant=grant,
                patient=grant.patient if with_patient else None,
            )
    return AccessDecision.not_found()


def _relationships(
    *,
    patient_id: int,
    user_id: int,
    now: datetime.datetime,
    department_id: int | None = None,
    with_patient: bool,
) -> QuerySet[Patient]:
    """The patient's row (only its id, unless ``with_patient``), annotated with each care relationship
    ``user_id`` has to it at ``now``: every relationship in one query (issue 11: a ward nurse's chart
    asked three times). ``department_id``: also a stay open on that ward."""
    encounters = Encounter.objects.filter(open_encounters(), patient_id=OuterRef("pk"))
    rows = Patient.objects.filter(pk=patient_id).annotate(
        care_team=Exists(
            CareAssignment.objects.filter(active_assignments(now), staff_id=user_id, patient_id=OuterRef("pk"))
        ),
        attending=Exists(encounters.filter(attending_id=user_id)),
        ward=Exists(encounters.filter(department_id=department_id)) if department_id is not None else Value(False),
    )
    return rows if with_patient else rows.only("id")


# The relationship query's shapes (one per ward or not, patient's row or not), compiled once per
# process and connection (healthcrypt/shaped.py): building and compiling it cost most of the policy's
# time on every chart (about 1.4 ms of 2 ms, issue 11). Every value in it is bound per call; a shape
# whose values do not all come out as parameters is not kept, and the query is built each time.
_SHAPES = "_healthcrypt_policy_shapes"


def _relationship_row(
    user: Any, patient_id: int, at: datetime.datetime, *, ward: bool, with_patient: bool
) -> Patient | None:
    values: dict[str, Any] = {"patient_id": patient_id, "user_id": user.pk, "now": at}
    if ward:
        values["department_id"] = user.department_id
    build = functools.partial(_relationships, with_patient=with_patient)
    compiled = shaped.shape(_SHAPES, ("relationships", ward, with_patient), build, values, alias=DEFAULT_DB_ALIAS)
    if compiled is None:
        return build(**values).first()
    row: Patient | None = shaped.first_instance(compiled, values, DEFAULT_DB_ALIAS)
    return row


def chart_access(
    user: Any, patient_id: int, *, at: datetime.datetime | None = None, with_patient: bool = False
) -> AccessDecision:
    """Decide whether ``user`` may see ``patient_id``'s record now, and which sections of it.

    Cheap: one indexed query for the relationships (on the patient's row), and one for a grant only
    when none applies, so it can run on every chart request. ``with_patient``: an allowed decision
    made on the patient's row carries that row, sealed (``AccessDecision.patient``).
    """
    policy = policy_for(user)
    if policy is None or policy.chart_access == ChartAccess.NONE:
        return AccessDecision.forbidden("role_without_chart_access")
    at = at or timezone.now()
    categories = policy.categories

    def patient_row(rows: QuerySet[Patient]) -> Patient | None:
        return (rows if with_patient else rows.only("id")).first()

    def allowed(explanation: str, row: Patient) -> AccessDecision:
        return AccessDecision(True, 200, explanation, categories, patient=row if with_patient else None)

    # A relationship implies the patient exists, so only registration needs its own existence check.
    match policy.chart_access:
        case ChartAccess.DEMOGRAPHICS_ONLY:
            row = patient_row(Patient.objects.filter(pk=patient_id))
            return allowed("registration", row) if row is not None else AccessDecision.not_found()
        case ChartAccess.OWN_RECORD:
            row = patient_row(Patient.objects.filter(pk=patient_id, portal_user_id=user.pk))
            return allowed("own_record", row) if row is not None else AccessDecision.not_found()
        case ChartAccess.CARE_TEAM | ChartAccess.CARE_TEAM_OR_WARD:
            ward = policy.chart_access == ChartAccess.CARE_TEAM_OR_WARD and user.department_id is not None
            row = _relationship_row(user, patient_id, at, ward=ward, with_patient=with_patient)
            if row is not None:
                for explanation in ("care_team", "attending", "ward"):
                    if getattr(row, explanation):
                        return allowed(explanation, row)
            # The fallback costs its query only when no care relationship exists.
            return _break_glass(user, policy, patient_id, at, with_patient=with_patient)
        case ChartAccess.OPEN_ORDER:
            order_ids = tuple(
                Order.objects.filter(
                    patient_id=patient_id,
                    kind=ORDER_KIND_FOR_ROLE[policy.role],
                    department_id=user.department_id,
                    status__in=Order.OPEN_STATUSES,
                ).values_list("pk", flat=True)
            )
            if order_ids and user.department_id is not None:
                return AccessDecision(True, 200, "order", categories, order_ids)
            return AccessDecision.not_found()
        case ChartAccess.BREAK_GLASS_ONLY:
            return _break_glass(user, policy, patient_id, at, with_patient=with_patient)
        case unknown:  # pragma: no cover - every rule is matched above (the type checker proves it)
            assert_never(unknown)


def order_access(user: Any, order_id: int) -> tuple[AccessDecision, Order | None]:
    """Access to one order from a department worklist: the order must be open and for the user's department."""
    policy = policy_for(user)
    if policy is None or policy.role not in ORDER_KIND_FOR_ROLE:
        return AccessDecision.forbidden("role_without_worklist"), None
    order = (
        Order.objects.filter(
            pk=order_id,
            kind=ORDER_KIND_FOR_ROLE[policy.role],
            department_id=user.department_id,
            status__in=Order.OPEN_STATUSES,
        )
        .only("id", "patient_id", "kind", "department_id", "status", "encounter_id")
        .first()
    )
    if order is None or user.department_id is None:
        return AccessDecision.not_found(), None
    return AccessDecision(True, 200, "order", policy.categories, (order.pk,)), order


def openable_charts(user: Any, patient_ids: Iterable[int], *, at: datetime.datetime | None = None) -> frozenset[int]:
    """Which of ``patient_ids`` ``user`` may open now: :func:`chart_access` for a whole list at once.

    For list and search pages that say, per row, whether the record can be opened. The same rules
    as ``chart_access`` (tests hold the two together), in at most four set-based queries whatever
    the length of the list, instead of up to four per patient. Opening still goes through
    ``chart_access``; this only decides what a list offers.
    """
    ids = set(patient_ids)
    policy = policy_for(user)
    if not ids or policy is None or policy.chart_access == ChartAccess.NONE:
        return frozenset()
    at = at or timezone.now()
    openable: set[int] = set()
    match policy.chart_access:
        case ChartAccess.DEMOGRAPHICS_ONLY:
            openable = set(Patient.objects.filter(pk__in=ids).values_list("pk", flat=True))
        case ChartAccess.OWN_RECORD:
            openable = set(Patient.objects.filter(pk__in=ids, portal_user_id=user.pk).values_list("pk", flat=True))
        case ChartAccess.CARE_TEAM | ChartAccess.CARE_TEAM_OR_WARD:
            openable = set(
                CareAssignment.objects.filter(active_assignments(at), staff_id=user.pk, patient_id__in=ids).values_list(
                    "patient_id", flat=True
                )
            )
            related = Q(attending_id=user.pk)
            if policy.chart_access == ChartAccess.CARE_TEAM_OR_WARD and user.department_id is not None:
                related |= Q(department_id=user.department_id)
            openable |= set(
                Encounter.objects.filter(open_encounters(), related, patient_id__in=ids - openable).values_list(
                    "patient_id", flat=True
                )
            )
        case ChartAccess.OPEN_ORDER:
            if user.department_id is not None:
                openable = set(
                    Order.objects.filter(
                        patient_id__in=ids,
                        kind=ORDER_KIND_FOR_ROLE[policy.role],
                        department_id=user.department_id,
                        status__in=Order.OPEN_STATUSES,
                    ).values_list("patient_id", flat=True)
                )
        case ChartAccess.BREAK_GLASS_ONLY:
            pass
        case unknown:  # pragma: no cover - every rule is matched above (the type checker proves it)
            assert_never(unknown)
    rest = ids - openable
    grant_fallback = (ChartAccess.CARE_TEAM, ChartAccess.CARE_TEAM_OR_WARD, ChartAccess.BREAK_GLASS_ONLY)
    if rest and Capability.BREAK_GLASS in policy.capabilities and policy.chart_access in grant_fallback:
        openable |= set(
            BreakGlassGrant.objects.filter(active_grants(at), user_id=user.pk, patient_id__in=rest).values_list(
                "patient_id", flat=True
            )
        )
    return frozenset(openable)


# Departments whose desk works only its own schedule: a clinic's or ward's reception. A desk in
# administration (central registration) or without a department books for every department, as its
# registration work (demographics of any patient) is hospital-wide too.
_OWN_SCHEDULE_KINDS = frozenset({"ward", "emergency", "outpatient", "radiology", "lab"})


@dataclass(frozen=True)
class ScheduleScope:
    """The appointments a user works with: one department's, one clinician's, or every department's."""

    department_id: int | None = None
    clinician_id: int | None = None

    def appointments(self) -> Q:
        """This scope as a filter on Appointment."""
        if self.department_id is not None:
            return Q(department_id=self.department_id)
        if self.clinician_id is not None:
            return Q(clinician_id=self.clinician_id)
        return Q()

    def allows_department(self, department_id: int) -> bool:
        return self.department_id is None or self.department_id == department_id

    @property
    def all_departments(self) -> bool:
        return self.department_id is None and self.clinician_id is None


def schedule_scope(user: Any) -> ScheduleScope | None:
    """Which appointments ``user`` works with, or None for none at all.

    The front desk (``book_appointment``): its own department's schedule when it sits in a clinical
    department, every department otherwise. A physician (``view_schedule`` only): the appointments
    booked with them, whichever department.
    """
    policy = policy_for(user)
    if policy is None or Capability.VIEW_SCHEDULE not in policy.capabilities:
        return None
    if Capability.BOOK_APPOINTMENT in policy.capabilities:
        department = getattr(user, "department", None)
        if department is not None and department.kind in _OWN_SCHEDULE_KINDS:
            return ScheduleScope(department_id=department.pk)
        return ScheduleScope()
    return ScheduleScope(clinician_id=user.pk)
