"""Anomaly rules (DESIGN.md §7): small, documented functions that judge one access, grant, direct
change or sign-in failure against facts gathered beforehand, and say why it is suspicious.

The rules are pure: they never query. audit/facts.py gathers what they read, in a bounded number of
queries for the accesses of one request (inline) and with set-based queries for a window of stored
events (``manage.py scan_access``). Both paths feed the same functions, so they agree by
construction; audit/detection.py runs them, and audit/alerts.py turns findings into alerts.

Every threshold is a named constant with the reason for its value. A ``reason`` is plain words with
no patient data (no names, no dates of birth, no addresses): the alert names the patient by id only.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Collection
from typing import NamedTuple

from audit.models import Alert

# What the rules read and return, re-exported: callers import them from here.
from audit.rule_inputs import Access as Access
from audit.rule_inputs import AccessFacts as AccessFacts
from audit.rule_inputs import ActorFacts as ActorFacts
from audit.rule_inputs import Baseline as Baseline
from audit.rule_inputs import Finding as Finding
from audit.rule_inputs import GrantFacts as GrantFacts
from audit.rule_inputs import PatientFacts as PatientFacts
from audit.rule_inputs import Rule as Rule

S = Alert.Severity

# --- Thresholds (each with why) --------------------------------------------------------------------

# Explanations that come from a direct relationship with this patient (records/permissions.py). An
# access explained this way is the job; the relational rules (surname, address, coworker, VIP,
# deceased, after hours) judge only the weaker ones: being on the same ward, or nothing at all.
STRONG_EXPLANATIONS = frozenset(
    {"care_team", "attending", "order", "order_history", "registration", "own_record", "consult"}
)
WEAK_EXPLANATIONS = frozenset({"", "ward"})
# A department reading back an order it completed (records/selectors/worklist_history.py).
ORDER_HISTORY = "order_history"
# Accesses that open one patient's record (a list or a search shows many; a disclosure or export is
# recorded with its recipient and judged by compliance, not by these rules).
OPEN_ACTIONS = frozenset({"view", "download", "print", "summary", "emergency_summary"})
# Audit-of-the-audit events (a compliance officer reading the trail) are not chart accesses.
AUDIT_TRAIL_CATEGORY = "audit_trail"
CLINICAL_ROLES = frozenset({"physician", "nurse", "radiology", "lab", "ems"})
ORDER_ROLES = {"radiology": "radiology", "lab": "lab"}
# The section a department working from orders reads for its work: images for radiology, results for
# the laboratory. The order rule judges an access that showed it; a page that showed only the banner
# (demographics, allergies) or the order list gives away none of that department's clinical work.
ORDER_SECTIONS = {"radiology": "imaging", "lab": "observations"}

# After hours: an hour of the day counts as the user's usual when it holds at least this share of
# their accesses over the baseline period. 2% is about one hour's worth of a 12-hour shift spread
# thin; a lower share would let a single night of snooping make night-time "usual".
USUAL_HOUR_SHARE = 0.02
# Shift edges: people arrive early and leave late, so an hour next to a usual hour is usual too.
USUAL_HOUR_MARGIN = 1
# Below this many accesses in the baseline period we do not know a user's hours, and say nothing
# rather than alert on every new starter's first night shift.
MIN_BASELINE_EVENTS = 50
# The baseline period: four weeks covers a full rota of day and night shifts.
BASELINE_DAYS = 28

# Bulk browsing: distinct patients opened within one clock hour. A ward round is 20-30 patients an
# hour; the limit is twice the larger of the user's and their department's usual busiest hour (the
# 95th percentile of their hours), and never under the floor, so a quiet user is not alerted for a
# normal round.
BULK_WINDOW = datetime.timedelta(hours=1)
BULK_FACTOR = 2.0
BULK_FLOOR = 30

# Search then open: a name search that found this patient, then an opening of their record without
# a direct relationship within this long. Ten minutes covers "look someone up, then click".
SEARCH_OPEN_WINDOW = datetime.timedelta(minutes=10)
NAME_SEARCHES = frozenset({"name_dob", "name"})

# Break the glass: a second grant by the same user within a day raises the severity of the grant
# alert (one emergency a shift is plausible, two starts to look like a habit) ...
BREAK_GLASS_REPEAT_WINDOW = datetime.timedelta(hours=24)
# ... and this many grants within a week is its own, high-severity finding: ems staff break the
# glass a few times a week at most in the published audits; more means the grant replaces the
# care-team assignment that should exist.
REPEATED_BREAK_GLASS_COUNT = 4
REPEATED_BREAK_GLASS_WINDOW = datetime.timedelta(days=7)

# Lockout storms, hospital-wide within a fixed 15-minute bucket: five accounts locked out at once
# is a password-spraying run, not five people with a bad morning; fifty failures likewise (axes
# locks one username after five, so fifty spread over names means guessing across accounts).
STORM_BUCKET = datetime.timedelta(minutes=15)
LOCKOUT_STORM_COUNT = 5
FAILED_STORM_COUNT = 50
LOCKOUT_EVENTS = frozenset({"lockout"})
# A partner's refused token request is a failed sign-in of a system (exchange/api/token.py).
FAILURE_EVENTS = frozenset({"login_failed", "otp_failed", "partner_token_refused"})
# Partner API calls refused (a stale or forged token, a scope not granted, a patient not shared) or
# identifier searches that found nobody, by one partner (all calls without a valid token count as
# "partner:unknown") in a 15-minute bucket: an integration sends a handful when it is misconfigured;
# twenty is someone guessing MRNs or ids, or a stolen token's holder feeling their way.
PROBE_EVENTS = frozenset({"partner_api_refused"})
PARTNER_PROBING_COUNT = 20


def _weak(access: Access) -> bool:
    return access.explanation in WEAK_EXPLANATIONS


def bulk_limit(user: Baseline | None, department: Baseline | None) -> int:
    """Distinct patients per hour above which browsing is bulk, for this user (see BULK_*)."""
    usual = max(user.peak_patients_per_hour if user else 0, department.peak_patients_per_hour if department else 0)
    return max(BULK_FLOOR, int(usual * BULK_FACTOR))


def usual_hours(counts: dict[int, int]) -> frozenset[int]:
    """The hours of day (0-23) that hold at least USUAL_HOUR_SHARE of ``counts``, widened by the margin."""
    total = sum(counts.values())
    if not total:
        return frozenset()
    core = {hour for hour, n in counts.items() if n / total >= USUAL_HOUR_SHARE}
    return frozenset((hour + d) % 24 for hour in core for d in range(-USUAL_HOUR_MARGIN, USUAL_HOUR_MARGIN + 1))


# --- Access rules ----------------------------------------------------------------------------------


def unexplained_view(access: Access, facts: AccessFacts) -> Finding | None:
    """An opening of a record that carries no explanation at all (no relationship was recorded)."""
    if access.explanation:
        return None
    return Finding("unexplained_view", S.MEDIUM, "Opened a patient record with no recorded care relationship.")


def order_without_open_order(access: Access, facts: AccessFacts) -> Finding | None:
    """A radiology or lab user opened a record with no open order of their kind for their department,
    and the access showed their department's section (ORDER_SECTIONS: imaging, results).

    Not when the opening was of an order their department completed (explanation ``order_history``,
    records/selectors/worklist_history.py): the read path grants that only for the department's own
    completed order, shows only that order's work, and records the order's id in the event.
    """
    if facts.open_order is None or facts.open_order or access.explanation == ORDER_HISTORY:
        return None
    section = ORDER_SECTIONS.get(access.actor_role)
    if section is not None and not access.shows(section):
        return None
    return Finding(
        "order_without_open_order",
        S.HIGH,
        "A radiology or laboratory user opened a record without an open order for their department.",
    )


def same_surname(access: Access, facts: AccessFacts) -> Finding | None:
    """The patient's surname equals the user's (compared by blind index), without a direct relationship."""
    if not _weak(access) or not facts.actor.surname_index or facts.actor.surname_index != facts.patient.surname_index:
        return None
    if facts.actor.own_patient_id == access.patient_id:
        return None  # looking oneself up is the self-lookup rule's finding
    return Finding(
        "same_surname", S.HIGH, "Opened the record of a patient who shares the user's surname; no care relationship."
    )


def same_address(access: Access, facts: AccessFacts) -> Finding | None:
    """The patient lives at the user's address (blind index of street + postal code), no direct relationship."""
    if (
        not _weak(access)
        or not facts.actor.address_index
        or facts.actor.address_index != facts.patient.address_index
        or facts.actor.own_patient_id == access.patient_id
    ):
        return None
    return Finding(
        "same_address", S.HIGH, "Opened the record of a patient who shares the user's address; no care relationship."
    )


def coworker(access: Access, facts: AccessFacts) -> Finding | None:
    """The patient is an employee of the hospital (another staff member), without a direct relationship."""
    staff = facts.patient.staff_user_id
    if not _weak(access) or staff is None or staff == access.actor_id:
        return None
    return Finding(
        "coworker", S.MEDIUM, "Opened the record of a colleague (a patient who works here); no care relationship."
    )


def self_lookup(access: Access, facts: AccessFacts) -> Finding | None:
    """A staff member opened their own record through the clinical path instead of the patient portal."""
    if access.explanation == "own_record" or access.actor_role not in CLINICAL_ROLES | {"front_desk"}:
        return None
    if facts.patient.staff_user_id != access.actor_id or access.actor_id is None:
        return None
    return Finding(
        "self_lookup", S.MEDIUM, "Opened their own record through the clinical screens, not the patient portal."
    )


def confidential_patient(access: Access, facts: AccessFacts) -> Finding | None:
    """A confidential (VIP) patient's record opened without a direct relationship."""
    if not facts.patient.confidential or not _weak(access):
        return None
    return Finding(
        "confidential_patient", S.HIGH, "Opened a confidential (VIP) record without a direct care relationship."
    )


def deceased_patient(access: Access, facts: AccessFacts) -> Finding | None:
    """A deceased patient's record opened without a direct relationship (curiosity after a death)."""
    if not facts.patient.deceased or not _weak(access):
        return None
    return Finding(
        "deceased_patient", S.MEDIUM, "Opened the record of a deceased patient without a direct care relationship."
    )


def after_hours(access: Access, facts: AccessFacts) -> Finding | None:
    """An access outside the user's own usual hours, without a direct relationship.

    Judged against the user's baseline, not a fixed clock: a night nurse at 3 a.m. is at work.
    """
    baseline = facts.user_baseline
    if not _weak(access) or baseline is None or baseline.events < MIN_BASELINE_EVENTS:
        return None
    if facts.local_hour in baseline.usual_hours:
        return None
    return Finding(
        "after_hours", S.MEDIUM, "Opened a record outside the user's usual working hours; no direct care relationship."
    )


def bulk_browsing(access: Access, facts: AccessFacts) -> Finding | None:
    """Many distinct patients within an hour, beyond twice the user's and their department's busiest hour.

    Fires once per hour and user: on the access that crosses the limit.
    """
    if (
        not facts.new_this_hour
        or facts.patients_this_hour != bulk_limit(facts.user_baseline, facts.department_baseline) + 1
    ):
        return None
    return Finding(
        "bulk_browsing",
        S.HIGH,
        "Opened more distinct patient records within an hour than the user's and department's usual.",
    )


def search_then_open(access: Access, facts: AccessFacts) -> Finding | None:
    """A search by name, then the record of a patient it found opened without a direct relationship."""
    if not facts.found_by_name_search or not _weak(access):
        return None
    return Finding(
        "search_then_open",
        S.MEDIUM,
        "Searched for a patient by name, then opened the record without a direct care relationship.",
    )


ACCESS_RULES: tuple[Rule, ...] = (
    Rule("unexplained_view", S.MEDIUM, unexplained_view),
    Rule("order_without_open_order", S.HIGH, order_without_open_order),
    Rule("same_surname", S.HIGH, same_surname),
    Rule("same_address", S.HIGH, same_address),
    Rule("coworker", S.MEDIUM, coworker),
    Rule("self_lookup", S.MEDIUM, self_lookup),
    Rule("confidential_patient", S.HIGH, confidential_patient),
    Rule("deceased_patient", S.MEDIUM, deceased_patient),
    Rule("after_hours", S.MEDIUM, after_hours),
    Rule("bulk_browsing", S.HIGH, bulk_browsing),
    Rule("search_then_open", S.MEDIUM, search_then_open),
)


def judged(action: str, sections: Collection[str], patient_id: int | None) -> bool:
    """Whether an access is judged by the access rules: an opening of one patient's record (not a
    read of the audit trail). ``sections``: what it showed (audit.models.sections_of)."""
    if isinstance(sections, str):
        # A bare category would be searched as a string ("audit_trail" in "x_audit_trail_y").
        raise TypeError("judged() takes the list of sections an access showed, not one category.")
    return patient_id is not None and action in OPEN_ACTIONS and AUDIT_TRAIL_CATEGORY not in sections


# --- Break the glass -------------------------------------------------------------------------------


def break_glass(grant: GrantFacts) -> Finding:
    """Every emergency grant is reviewed; repeated, VIP or out-of-hours grants are reviewed first."""
    why = []
    if grant.previous_in_day:
        why.append("a second emergency access by the same user within 24 hours")
    if grant.confidential:
        why.append("a confidential (VIP) patient")
    baseline = grant.user_baseline
    if baseline is not None and baseline.events >= MIN_BASELINE_EVENTS and grant.local_hour not in baseline.usual_hours:
        why.append("outside the user's usual working hours")
    if why:
        return Finding("break_glass", S.HIGH, "Emergency access (break the glass) for review: " + "; ".join(why) + ".")
    return Finding("break_glass", S.MEDIUM, "Emergency access (break the glass) for review.")


def repeated_break_glass(grant: GrantFacts) -> Finding | None:
    """Many emergency grants by one user within a week: every grant at or past the count (they join
    one open alert per user, audit/alerts.py, so a run of grants is one case)."""
    if grant.previous_in_week + 1 < REPEATED_BREAK_GLASS_COUNT:
        return None
    return Finding(
        "repeated_break_glass",
        S.HIGH,
        f"{REPEATED_BREAK_GLASS_COUNT} emergency accesses by the same user within a week.",
    )


GRANT_RULES: tuple[Rule, ...] = (
    Rule("break_glass", S.MEDIUM, break_glass, kind="grant"),
    Rule("repeated_break_glass", S.HIGH, repeated_break_glass, kind="grant"),
)


# --- Direct database changes and sign-in storms ----------------------------------------------------


def direct_change(verified: bool) -> Finding | None:
    """A clinical row changed in the database without the application's verifiable marker."""
    if verified:
        return None
    return Finding(
        "direct_change", S.CRITICAL, "A clinical table was changed directly in the database, outside the application."
    )


def forged_event(mac_matches: bool) -> Finding | None:
    """An audit event whose mac does not match its content: not written by the application (the sealer checks)."""
    if mac_matches:
        return None
    return Finding(
        "forged_event",
        S.CRITICAL,
        "An audit event was written or changed in the database without the application's key.",
    )


def lockout_storm(event: str, count_in_bucket: int) -> Finding | None:
    """Many lockouts or failed sign-ins hospital-wide within 15 minutes (fires on the crossing event)."""
    if event in LOCKOUT_EVENTS and count_in_bucket == LOCKOUT_STORM_COUNT:
        return Finding("lockout_storm", S.HIGH, f"{LOCKOUT_STORM_COUNT} account lockouts within 15 minutes.")
    if event in FAILURE_EVENTS and count_in_bucket == FAILED_STORM_COUNT:
        return Finding(
            "lockout_storm", S.HIGH, f"{FAILED_STORM_COUNT} failed sign-ins (staff or partners) within 15 minutes."
        )
    return None


def partner_probing(event: str, count_by_partner_in_bucket: int) -> Finding | None:
    """One partner's refused or empty API calls reach PARTNER_PROBING_COUNT in a 15-minute bucket
    (fires on the crossing event)."""
    if event in PROBE_EVENTS and count_by_partner_in_bucket == PARTNER_PROBING_COUNT:
        return Finding(
            "partner_probing",
            S.HIGH,
            f"{PARTNER_PROBING_COUNT} refused or empty partner API calls by one partner within 15 minutes "
            "(guessed MRNs or ids, a stolen or stale token, or a broken integration).",
        )
    return None


class AuthBucket(NamedTuple):
    """An auth rule counted in 15-minute buckets: the events it counts, the count that fires it, the
    rule, and whether the events are counted per username (one partner) or hospital-wide."""

    events: frozenset[str]
    threshold: int
    rule: Callable[[str, int], Finding | None]
    per_username: bool


AUTH_BUCKETS: tuple[AuthBucket, ...] = (
    AuthBucket(LOCKOUT_EVENTS, LOCKOUT_STORM_COUNT, lockout_storm, per_username=False),
    AuthBucket(FAILURE_EVENTS, FAILED_STORM_COUNT, lockout_storm, per_username=False),
    AuthBucket(PROBE_EVENTS, PARTNER_PROBING_COUNT, partner_probing, per_username=True),
)


OTHER_RULES: tuple[Rule, ...] = (
    Rule("direct_change", S.CRITICAL, direct_change, kind="direct"),
    Rule("lockout_storm", S.HIGH, lockout_storm, kind="auth"),
    Rule("partner_probing", S.HIGH, partner_probing, kind="auth"),
    # Raised by the sealer as it links events (audit/sealer.py); scan_access does not re-check macs,
    # verify_audit does (it names such rows ALTERED).
    Rule("forged_event", S.CRITICAL, forged_event, kind="event"),
)

# Findings about a user's behaviour rather than one patient: repeats within a day join one alert
# whatever the patient (audit/alerts.py AGGREGATE_WINDOW); the others join per user and patient.
PER_USER_RULES = frozenset({"after_hours", "bulk_browsing", "repeated_break_glass"})

ALL_RULES: dict[str, Rule] = {rule.name: rule for rule in ACCESS_RULES + GRANT_RULES + OTHER_RULES}


def hour_bucket(at: datetime.datetime) -> datetime.datetime:
    """The start of the clock hour of ``at`` (bulk browsing counts within it)."""
    return at.replace(minute=0, second=0, microsecond=0)


def storm_bucket(at: datetime.datetime) -> datetime.datetime:
    """The start of the 15-minute bucket of ``at`` (lockout storms count within it)."""
    return at.replace(minute=at.minute - at.minute % 15, second=0, microsecond=0)
