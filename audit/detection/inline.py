"""The rules run inline: on every access, grant, sealed direct change and sign-in failure.

A rule that fails must not hide data from a clinician: the run happens in a savepoint, any
exception is caught, logged without patient data (rule name, event id, exception class) and kept as a
``RuleFailure`` row for the security dashboard, and the read goes on.
"""

from __future__ import annotations

import datetime
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Q

from audit import facts as F
from audit import rules
from audit.alerts import alert_raise
from audit.models import (
    AccessEvent,
    ActivityBaseline,
    Alert,
    AuthEventRecord,
    DirectChangeSeal,
    RuleFailure,
    sections_of,
)
from audit.rules import Access, AccessFacts, GrantFacts

logger = logging.getLogger(__name__)


def rule_failure_record(rule: str, kind: str, object_id: int | None, exc: BaseException) -> None:
    """Keep a rule failure (class name only: a message could quote data) and log it without PHI."""
    logger.error("Anomaly rule %s failed on %s #%s: %s", rule, kind, object_id, type(exc).__name__)
    try:
        with transaction.atomic():
            RuleFailure.objects.create(rule=rule, kind=kind, object_id=object_id, error=type(exc).__name__[:100])
    except Exception:  # pragma: no cover - the database itself is failing; the log line above remains
        logger.exception("Could not record the failure of rule %s", rule)


@dataclass
class Outcome:
    """What a run found: findings per rule, alerts raised, rule failures."""

    findings: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    raised: list[Alert] = field(default_factory=list)
    failures: int = 0
    judged: int = 0
    # Access events the bulk scan read from the database (the candidates, with their warm-up rows).
    candidates: int = 0


def judge_access(
    access: Access,
    facts: AccessFacts,
    outcome: Outcome,
    *,
    only: str | None = None,
    rule_set: Iterable[rules.Rule] | None = None,
) -> None:
    """Run the access rules on one access and raise an alert per finding; failures are recorded."""
    outcome.judged += 1
    for rule in rules.ACCESS_RULES if rule_set is None else rule_set:
        if only is not None and rule.name != only:
            continue
        try:
            finding = rule.judge(access, facts)
        except Exception as exc:
            outcome.failures += 1
            rule_failure_record(rule.name, "access", access.event_id, exc)
            continue
        if finding is None:
            continue
        outcome.findings[finding.rule] += 1
        alert = alert_raise(
            finding=finding,
            kind="access",
            object_ids=access.event_ids,
            occurred_at=access.at,
            actor_id=access.actor_id,
            actor_username=access.actor_username,
            actor_role=access.actor_role,
            department_id=facts.actor.department_id,
            patient_id=access.patient_id,
            aggregate=True,
            per_patient=finding.rule not in rules.PER_USER_RULES,
        )
        if alert is not None:
            outcome.raised.append(alert)


def judge_new_accesses(actor: Any, events: list[AccessEvent], patients: Iterable[Any] = ()) -> Outcome:
    """Inline: judge the accesses among ``events`` just written for ``actor``. Never raises.

    ``patients``: rows of the accessed patients the read path had loaded already (the policy's
    row, sealed), so that their facts are not read again (audit/facts.py ``inline_facts``)."""
    outcome = Outcome()
    if not events or not any(rules.judged(e.action, sections_of(e), e.patient_id) for e in events):
        return outcome
    try:
        with transaction.atomic():
            for access, access_facts in F.inline_facts(actor, events, patients):
                judge_access(access, access_facts, outcome)
    except Exception as exc:
        outcome.failures += 1
        rule_failure_record("facts", "access", events[0].pk, exc)
    return outcome


# --- Break the glass -------------------------------------------------------------------------------


def _grant_facts(grant: Any, grants_before: list[datetime.datetime], confidential: bool, baseline: Any) -> GrantFacts:
    at = grant.granted_at
    return GrantFacts(
        grant_id=grant.pk,
        user_id=grant.user_id,
        patient_id=grant.patient_id,
        granted_at=at,
        confidential=confidential,
        local_hour=F.local_hour(at),
        user_baseline=baseline,
        previous_in_day=sum(1 for t in grants_before if at - rules.BREAK_GLASS_REPEAT_WINDOW <= t < at),
        previous_in_week=sum(1 for t in grants_before if at - rules.REPEATED_BREAK_GLASS_WINDOW <= t < at),
    )


def judge_grant(facts: GrantFacts, outcome: Outcome, *, only: str | None = None, user: Any = None) -> None:
    for rule in rules.GRANT_RULES:
        if only is not None and rule.name != only:
            continue
        try:
            finding = rule.judge(facts)
        except Exception as exc:
            outcome.failures += 1
            rule_failure_record(rule.name, "grant", facts.grant_id, exc)
            continue
        if finding is None:
            continue
        outcome.findings[finding.rule] += 1
        alert = alert_raise(
            finding=finding,
            kind="grant",
            object_ids=[facts.grant_id],
            occurred_at=facts.granted_at,
            actor_id=facts.user_id,
            actor_username=getattr(user, "username", "") if user is not None else "",
            actor_role=getattr(user, "role", "") if user is not None else "",
            department_id=getattr(user, "department_id", None) if user is not None else None,
            patient_id=facts.patient_id,
            # Every grant is its own review; a run of grants past the weekly count is one case.
            aggregate=finding.rule in rules.PER_USER_RULES,
            per_patient=False,
        )
        if alert is not None:
            outcome.raised.append(alert)


def judge_new_grant(grant: Any) -> Outcome:
    """A grant was just made: every grant raises an alert for review. Failures propagate (the grant's
    transaction is undone: an emergency grant nobody reviews is worse than asking again)."""
    from records.models import BreakGlassGrant, Patient

    outcome = Outcome()
    at = grant.granted_at
    before = list(
        BreakGlassGrant.objects.filter(
            user_id=grant.user_id, granted_at__gte=at - rules.REPEATED_BREAK_GLASS_WINDOW, granted_at__lt=at
        )
        .exclude(pk=grant.pk)
        .values_list("granted_at", flat=True)
    )
    confidential = bool(Patient.objects.filter(pk=grant.patient_id, is_confidential=True).exists())
    baseline = F.baselines_for([grant.user_id], []).get((ActivityBaseline.Scope.USER, grant.user_id))
    judge_grant(_grant_facts(grant, before, confidential, baseline), outcome, user=grant.user)
    return outcome


# --- Direct changes and sign-in storms -------------------------------------------------------------


def judge_seals(seals: Iterable[DirectChangeSeal], outcome: Outcome | None = None) -> Outcome:
    """Alert on every sealed direct change whose marker did not verify (made outside the application)."""
    outcome = outcome or Outcome()
    for seal in seals:
        finding = rules.direct_change(seal.verified)
        if finding is None:
            continue
        outcome.findings[finding.rule] += 1
        alert = alert_raise(finding=finding, kind="direct", object_ids=[seal.pk], occurred_at=seal.change_at)
        if alert is not None:
            outcome.raised.append(alert)
    return outcome


def judge_forged_events(kind: str, events: Iterable[tuple[int, datetime.datetime]]) -> Outcome:
    """Alert on audit events (``kind``: access, change or auth) the sealer found with a mac that does not match.

    The row's own who and whom are not trusted (a forged row can name anyone), so the alert names no
    user or patient: it points at the rows, which the alert page lists.
    """
    outcome = Outcome()
    finding = rules.forged_event(mac_matches=False)
    if finding is None:  # pragma: no cover - a mismatch is always a finding
        return outcome
    for pk, at in events:
        outcome.findings[finding.rule] += 1
        try:
            with transaction.atomic():
                alert = alert_raise(finding=finding, kind=kind, object_ids=[pk], occurred_at=at)
        except Exception as exc:
            rule_failure_record(finding.rule, kind, pk, exc)
            outcome.failures += 1
            continue
        if alert is not None:
            outcome.raised.append(alert)
    return outcome


def judge_auth_event(record: AuthEventRecord) -> Outcome:
    """Inline: count this event's kind in its 15-minute bucket (one query; per partner for a refused
    partner API call) and judge the rule of that bucket (lockout storm, partner probing)."""
    outcome = Outcome()
    bucket = next((b for b in rules.AUTH_BUCKETS if record.event in b.events), None)
    if bucket is None:
        return outcome
    same_username = {"username": record.username} if bucket.per_username else {}
    try:
        with transaction.atomic():
            start = rules.storm_bucket(record.at)
            count = (
                AuthEventRecord.objects.filter(
                    event__in=bucket.events, at__gte=start, at__lte=record.at, **same_username
                )
                .filter(Q(at__lt=record.at) | Q(pk__lte=record.pk))
                .count()
            )
            judge_bucket(bucket, record.pk, record.event, record.at, count, outcome)
    except Exception as exc:
        rule_failure_record(bucket.rule.__name__, "auth", record.pk, exc)
    return outcome


def judge_bucket(
    bucket: rules.AuthBucket, pk: int, event: str, at: datetime.datetime, count: int, outcome: Outcome
) -> None:
    finding = bucket.rule(event, count)
    if finding is None:
        return
    outcome.findings[finding.rule] += 1
    alert = alert_raise(finding=finding, kind="auth", object_ids=[pk], occurred_at=at)
    if alert is not None:
        outcome.raised.append(alert)
