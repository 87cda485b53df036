"""The one table of what each role may do (DESIGN.md §3).

Views, services, navigation and the permission-matrix tests all read this table; nothing else
hard-codes a role. A capability says what kind of work a role does; it never grants access to a
particular patient on its own. Access to a chart also needs a *relationship* (care-team assignment,
open order for the user's department, attending encounter, break-the-glass grant), which
``ROLE_POLICIES[role].chart_access`` names and ``accounts/permissions.py`` will check.

Superusers exist only for operations (migrations, key rotation, break-fix): they hold no role and
therefore no clinical capability at all. The Django admin is the one thing they may use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from django.db import models
from django.utils.translation import gettext_lazy as _


class Role(models.TextChoices):
    PHYSICIAN = "physician", _("Physician")
    NURSE = "nurse", _("Nurse")
    RADIOLOGY = "radiology", _("Radiology")
    LAB = "lab", _("Laboratory")
    FRONT_DESK = "front_desk", _("Front desk")
    EMS = "ems", _("Paramedic / ER")
    COMPLIANCE = "compliance", _("Compliance officer")
    SECURITY = "security", _("Security analyst")
    RESEARCHER = "researcher", _("Researcher")
    PATIENT = "patient", _("Patient")


class Capability(StrEnum):
    """Kinds of work. The value is the name used in code: ``has_capability(user, "view_chart")``."""

    # Clinical chart
    VIEW_CHART = "view_chart"
    VIEW_PATIENT_LIST = "view_patient_list"
    WRITE_NOTE = "write_note"
    PLACE_ORDER = "place_order"
    PRESCRIBE = "prescribe"
    RECORD_VITALS = "record_vitals"
    ADMINISTER_MEDICATION = "administer_medication"
    VIEW_WORKLIST = "view_worklist"
    ENTER_RESULT = "enter_result"
    UPLOAD_IMAGE = "upload_image"
    COMPLETE_ORDER = "complete_order"
    RECORD_DIAGNOSIS = "record_diagnosis"
    RECORD_ALLERGY = "record_allergy"
    BREAK_GLASS = "break_glass"
    # Registration (demographics only)
    SEARCH_PATIENTS = "search_patients"
    VIEW_DEMOGRAPHICS = "view_demographics"
    REGISTER_PATIENT = "register_patient"
    EDIT_DEMOGRAPHICS = "edit_demographics"
    ADMIT_PATIENT = "admit_patient"
    ASSIGN_CARE_TEAM = "assign_care_team"
    # Bring another provider's records in (manage.py import_fhir --actor): writes whole records, shows
    # the importer nothing but counts.
    IMPORT_RECORDS = "import_records"
    # Send a patient's whole record out as FHIR R4 (a disclosure): only where the full chart may be
    # opened through a care relationship, never through a break-the-glass grant.
    EXPORT_RECORD = "export_record"
    # Appointments: booking, cancelling and checking in (the front desk); reading a day's schedule
    # (the front desk for a department, a physician their own).
    BOOK_APPOINTMENT = "book_appointment"
    VIEW_SCHEDULE = "view_schedule"
    # Oversight (metadata only, never clinical values)
    ADMIN_SITE = "admin_site"
    VIEW_AUDIT = "view_audit"
    EXPORT_AUDIT = "export_audit"
    VIEW_DISCLOSURES = "view_disclosures"
    # The partner registry of the FHIR API (exchange/): partners, their keys, sharings, tokens.
    MANAGE_PARTNERS = "manage_partners"
    REVIEW_ALERTS = "review_alerts"
    MANAGE_LOCKOUTS = "manage_lockouts"
    # Research
    VIEW_DEIDENTIFIED = "view_deidentified"
    # Research datasets (research/): a researcher asks, compliance decides and builds.
    REQUEST_DATASET = "request_dataset"
    APPROVE_DATASET = "approve_dataset"
    # Patient portal
    VIEW_OWN_RECORD = "view_own_record"
    VIEW_OWN_ACCESS_LOG = "view_own_access_log"


class ChartAccess(StrEnum):
    """Which relationship lets a role open a particular patient's chart."""

    CARE_TEAM = "care_team"  # active care-team assignment or attending encounter
    CARE_TEAM_OR_WARD = "care_team_or_ward"  # as CARE_TEAM, or the patient is admitted to the nurse's ward
    OPEN_ORDER = "open_order"  # an open order for the user's department
    DEMOGRAPHICS_ONLY = "demographics_only"  # registration data, never clinical data
    BREAK_GLASS_ONLY = "break_glass_only"  # only through an active break-the-glass grant
    OWN_RECORD = "own_record"  # the patient's own record
    NONE = "none"  # never


class DataCategory(StrEnum):
    """Sections of a patient's record. Each read is reported to the audit trail with its category."""

    DEMOGRAPHICS = "demographics"
    CARE_TEAM = "care_team"
    ENCOUNTERS = "encounters"
    CONDITIONS = "conditions"
    ALLERGIES = "allergies"
    MEDICATIONS = "medications"
    OBSERVATIONS = "observations"
    ORDERS = "orders"
    NOTES = "notes"
    IMAGING = "imaging"
    PROCEDURES = "procedures"
    IMMUNIZATIONS = "immunizations"


D = DataCategory
ALL_CATEGORIES = frozenset(DataCategory)
# What each kind of access shows. Registration never sees clinical data; departments working from an
# order see what the order needs (allergies matter for contrast and samples), not the whole chart.
REGISTRATION_CATEGORIES = frozenset({D.DEMOGRAPHICS, D.CARE_TEAM, D.ENCOUNTERS})
RADIOLOGY_CATEGORIES = frozenset({D.DEMOGRAPHICS, D.ORDERS, D.IMAGING, D.ALLERGIES, D.CONDITIONS, D.NOTES})
LAB_CATEGORIES = frozenset({D.DEMOGRAPHICS, D.ORDERS, D.OBSERVATIONS, D.ALLERGIES, D.CONDITIONS})
PATIENT_CATEGORIES = frozenset(
    {D.DEMOGRAPHICS, D.ENCOUNTERS, D.CONDITIONS, D.ALLERGIES, D.MEDICATIONS, D.OBSERVATIONS, D.IMMUNIZATIONS}
)


@dataclass(frozen=True)
class RolePolicy:
    role: Role
    typical_work: str
    chart_access: ChartAccess
    capabilities: frozenset[Capability]
    # True for roles that do clinical work; they need a department or ward.
    clinical: bool = False
    # The sections of a record this role may see once the relationship allows it.
    categories: frozenset[DataCategory] = frozenset()


C = Capability

_POLICIES: tuple[RolePolicy, ...] = (
    RolePolicy(
        Role.PHYSICIAN,
        "Own patients, orders, notes, results.",
        ChartAccess.CARE_TEAM,
        frozenset(
            {
                C.VIEW_CHART,
                C.VIEW_PATIENT_LIST,
                C.WRITE_NOTE,
                C.PLACE_ORDER,
                C.PRESCRIBE,
                C.RECORD_DIAGNOSIS,
                C.RECORD_ALLERGY,
                C.RECORD_VITALS,
                C.SEARCH_PATIENTS,
                C.VIEW_DEMOGRAPHICS,
                # Their own clinic schedule (appointments booked with them).
                C.VIEW_SCHEDULE,
                # Emergency access when no care relationship exists yet (DESIGN.md §8).
                C.BREAK_GLASS,
                # A patient's record as FHIR R4 for another provider or the patient (a disclosure).
                C.EXPORT_RECORD,
            }
        ),
        clinical=True,
        categories=ALL_CATEGORIES,
    ),
    RolePolicy(
        Role.NURSE,
        "Vitals, notes, medication administration.",
        ChartAccess.CARE_TEAM_OR_WARD,
        frozenset(
            {
                C.VIEW_CHART,
                C.VIEW_PATIENT_LIST,
                C.WRITE_NOTE,
                C.RECORD_VITALS,
                C.RECORD_ALLERGY,
                C.ADMINISTER_MEDICATION,
                C.SEARCH_PATIENTS,
                C.VIEW_DEMOGRAPHICS,
                C.BREAK_GLASS,
            }
        ),
        clinical=True,
        categories=ALL_CATEGORIES,
    ),
    RolePolicy(
        Role.RADIOLOGY,
        "Imaging worklist, image upload, reports.",
        ChartAccess.OPEN_ORDER,
        frozenset({C.VIEW_CHART, C.VIEW_WORKLIST, C.UPLOAD_IMAGE, C.ENTER_RESULT, C.COMPLETE_ORDER, C.WRITE_NOTE}),
        clinical=True,
        categories=RADIOLOGY_CATEGORIES,
    ),
    RolePolicy(
        Role.LAB,
        "Laboratory worklist, result entry.",
        ChartAccess.OPEN_ORDER,
        frozenset({C.VIEW_CHART, C.VIEW_WORKLIST, C.ENTER_RESULT, C.COMPLETE_ORDER}),
        clinical=True,
        categories=LAB_CATEGORIES,
    ),
    RolePolicy(
        Role.FRONT_DESK,
        "Registration, demographics, admissions, appointments.",
        ChartAccess.DEMOGRAPHICS_ONLY,
        frozenset(
            {
                C.SEARCH_PATIENTS,
                C.VIEW_DEMOGRAPHICS,
                C.REGISTER_PATIENT,
                C.EDIT_DEMOGRAPHICS,
                C.ADMIT_PATIENT,
                C.ASSIGN_CARE_TEAM,
                C.BOOK_APPOINTMENT,
                C.VIEW_SCHEDULE,
                # Records arriving from another provider are intake, like registration: the import
                # shows no clinical value to the one who runs it (counts and JSON paths only), and
                # compliance, who reviews the change events it writes, stays apart from it.
                C.IMPORT_RECORDS,
            }
        ),
        categories=REGISTRATION_CATEGORIES,
    ),
    RolePolicy(
        Role.EMS,
        "Emergency care; charts only by breaking the glass.",
        ChartAccess.BREAK_GLASS_ONLY,
        frozenset({C.VIEW_CHART, C.BREAK_GLASS, C.RECORD_VITALS, C.WRITE_NOTE, C.SEARCH_PATIENTS}),
        clinical=True,
        categories=ALL_CATEGORIES,
    ),
    RolePolicy(
        Role.COMPLIANCE,
        "Audit trail, disclosures and reports in the admin.",
        ChartAccess.NONE,
        frozenset(
            {C.ADMIN_SITE, C.VIEW_AUDIT, C.EXPORT_AUDIT, C.VIEW_DISCLOSURES, C.MANAGE_PARTNERS, C.APPROVE_DATASET}
        ),
    ),
    RolePolicy(
        Role.SECURITY,
        "Anomaly alerts, investigations, lockouts (event metadata only).",
        ChartAccess.NONE,
        frozenset({C.REVIEW_ALERTS, C.MANAGE_LOCKOUTS, C.VIEW_AUDIT}),
    ),
    RolePolicy(
        Role.RESEARCHER,
        "Research on de-identified data; never identified data.",
        ChartAccess.NONE,
        frozenset({C.VIEW_DEIDENTIFIED, C.REQUEST_DATASET}),
    ),
    RolePolicy(
        Role.PATIENT,
        "Own record summary.",
        ChartAccess.OWN_RECORD,
        frozenset({C.VIEW_OWN_RECORD, C.VIEW_OWN_ACCESS_LOG}),
        categories=PATIENT_CATEGORIES,
    ),
)

ROLE_POLICIES: Mapping[Role, RolePolicy] = MappingProxyType({policy.role: policy for policy in _POLICIES})

# Capabilities of an active superuser without a role: operations only.
OPERATOR_CAPABILITIES: frozenset[Capability] = frozenset({C.ADMIN_SITE})


def policy_for(user: Any) -> RolePolicy | None:
    """The policy of the user's role, or None for anonymous, inactive or role-less users."""
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return None
    role = getattr(user, "role", "")
    if role not in Role.values:
        return None
    return ROLE_POLICIES[Role(role)]


def capabilities_for(user: Any) -> frozenset[Capability]:
    """Everything the user's role may do; empty for anonymous or inactive users (fail closed)."""
    policy = policy_for(user)
    if policy is not None:
        return policy.capabilities
    if getattr(user, "is_authenticated", False) and getattr(user, "is_active", False) and user.is_superuser:
        return OPERATOR_CAPABILITIES
    return frozenset()


def has_capability(user: Any, capability: Capability | str) -> bool:
    """True when the user's role includes ``capability``. Unknown capability names raise ValueError,
    so a typo cannot silently deny (or, worse, be mistaken for a grant elsewhere)."""
    return Capability(capability) in capabilities_for(user)


def roles_with(capability: Capability | str) -> list[Role]:
    """The roles whose table row includes ``capability`` (for views' decorators and the tests)."""
    wanted = Capability(capability)
    return [policy.role for policy in _POLICIES if wanted in policy.capabilities]


def table() -> Iterable[RolePolicy]:
    """Every role's policy, in the order of DESIGN.md §3."""
    return iter(_POLICIES)
