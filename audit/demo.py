"""A few weeks of audit history for the demo hospital, so the security dashboard and charts are not empty.

Run by ``manage.py seed_demo_history`` (which ``seed_demo`` calls). Deterministic (a seeded random
generator, times relative to "now" rounded to the day) and idempotent: the history is written once,
marked by ``DEMO_SESSION_REF`` on its access events, and a second run writes nothing.

What it writes, all through the audit trail's own chain (``seal_and_insert``, so ``verify_audit``
stays intact), with synthetic users and patients only:

- three weeks of ordinary chart reads by the demo clinicians of their own patients, in their shift;
- suspicious reads: a nurse opening patients with no care relationship, a night-time read with no
  relationship, a radiology read without an order, a burst of 35 patients in one hour;
- a past emergency (break-the-glass) grant by the ``ems`` user, with its reads;
- failed passwords and codes, and one lockout;
- alerts: raised by ``scan_access`` when the anomaly rules are installed, otherwise a handful made
  here for the suspicious reads above; then a few are worked (acknowledged, noted, closed) by the
  ``security`` user through the workflow services, so every state shows and is audited.
"""

from __future__ import annotations

import datetime
import io
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.core.management import call_command, get_commands
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from accounts.services import username_for_records
from audit.alert_workflow import alert_acknowledge, alert_assign, alert_close, alert_note
from audit.chain import seal_and_insert
from audit.detection import nearline
from audit.models import AccessEvent, Alert, AlertSubject, AuthEventRecord
from records.models import BreakGlassGrant, CareAssignment, Patient

logger = logging.getLogger(__name__)

DEMO_SESSION_REF = "demo-history"
HISTORY_DAYS = 21
RANDOM_SEED = 20261204
DEMO_IP = "10.20.0.{}"
DEMO_AGENT = "Mozilla/5.0 (demo workstation)"
CHART_SECTIONS = ("demographics", "conditions", "allergies", "medications", "observations", "notes")
NURSE_SECTIONS = ("demographics", "medications", "observations", "notes")
BULK_PATIENTS = 35


@dataclass
class History:
    """What was written (counts for the command's output)."""

    access_events: int = 0
    auth_events: int = 0
    grants: int = 0
    alerts: int = 0
    alerts_from_scan: bool = False
    skipped: bool = False
    suspicious: list[tuple[str, str, list[AccessEvent]]] = field(default_factory=list)


def _event(
    *,
    user: User,
    patient_id: int | None,
    sections: Sequence[str],
    at: datetime.datetime,
    explanation: str,
    action: str = "view",
    purpose: str = "treatment",
    detail: dict[str, Any] | None = None,
    ip: int = 1,
) -> AccessEvent:
    return AccessEvent(
        at=at,
        actor_id=user.pk,
        actor_username=user.username,
        actor_role=user.role,
        patient_id=patient_id,
        category=sections[0],
        sections=sorted(set(sections)),
        action=action,
        purpose=purpose,
        explanation=explanation,
        detail=detail or {},
        ip=DEMO_IP.format(ip),
        user_agent=DEMO_AGENT,
        request_id=f"demo{at:%Y%m%d%H%M%S}{user.pk:03d}{patient_id or 0:05d}",
        session_ref=DEMO_SESSION_REF,
    )


def _view(
    user: User, patient_id: int, at: datetime.datetime, explanation: str, sections: Sequence[str], **kw: Any
) -> list[AccessEvent]:
    """One chart view: one event listing the sections shown, the first its primary one (as the read
    path writes it, audit/services.py access_event_record). A list, so batches add up."""
    return [_event(user=user, patient_id=patient_id, sections=sections, at=at, explanation=explanation, **kw)]


def seed_history(*, users: dict[str, User], now: datetime.datetime | None = None) -> History:
    """Write the demo history once (see the module docstring). Call inside the seeding transaction."""
    history = History()
    if AccessEvent.objects.filter(session_ref=DEMO_SESSION_REF).exists():
        history.skipped = True
        return history
    rng = random.Random(RANDOM_SEED)  # noqa: S311 (demo data, not security)
    today = (now or timezone.now()).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - datetime.timedelta(days=HISTORY_DAYS)

    def at(day: int, hour: int, minute: int = 0) -> datetime.datetime:
        return start + datetime.timedelta(days=day, hours=hour, minutes=minute)

    teams: dict[int, list[int]] = {}
    for staff_id, patient_id in CareAssignment.objects.filter(ends_at__isnull=True).values_list(
        "staff_id", "patient_id"
    ):
        teams.setdefault(staff_id, []).append(patient_id)
    assigned = {pid for pids in teams.values() for pid in pids}
    patient_ids = list(Patient.objects.order_by("id").values_list("id", flat=True))
    unassigned = [pid for pid in patient_ids if pid not in assigned] or patient_ids[-3:]
    events: list[AccessEvent] = []

    # Ordinary work: each clinician reads a few of their own patients on most days, in their shift.
    shifts = {"physician": (8, 17), "physician2": (8, 17), "nurse": (7, 19), "nurse2": (7, 19)}
    for day in range(HISTORY_DAYS):
        for username, (first, last) in shifts.items():
            user = users[username]
            own = teams.get(user.pk, [])
            if not own or rng.random() < 0.15:  # days off
                continue
            for patient_id in rng.sample(own, min(len(own), rng.randint(3, 6))):
                when = at(day, rng.randint(first, last - 1), rng.randint(0, 59))
                is_physician = user.role == "physician"
                explanation = "attending" if is_physician and rng.random() < 0.5 else "care_team"
                events += _view(user, patient_id, when, explanation, CHART_SECTIONS if is_physician else NURSE_SECTIONS)

    # Suspicious reads, with the rule each one should trip.
    nurse2, physician2, radiology, nurse = users["nurse2"], users["physician2"], users["radiology"], users["nurse"]
    for n, day in enumerate((4, 11, 17)):
        batch = _view(nurse2, unassigned[n % len(unassigned)], at(day, 13, 20 + n), "", ("demographics", "conditions"))
        history.suspicious.append(
            ("unexplained_view", "Opened the record of a patient with no care relationship.", batch)
        )
        events += batch
    batch = _view(physician2, unassigned[-1], at(15, 2, 40), "", ("demographics", "medications", "notes"))
    history.suspicious.append(
        ("after_hours", "Opened a record at night, outside the user's usual hours; no care relationship.", batch)
    )
    events += batch
    batch = _view(radiology, unassigned[0], at(9, 10, 5), "", ("demographics", "imaging"))
    history.suspicious.append(
        ("order_without_open_order", "Radiology opened a record with no open radiology order.", batch)
    )
    events += batch
    burst = patient_ids[:BULK_PATIENTS]
    batch = []
    for i, patient_id in enumerate(burst):
        batch += _view(nurse, patient_id, at(18, 21, i), "ward" if patient_id in assigned else "", ("demographics",))
    history.suspicious.append(
        ("bulk_browsing", f"Opened {len(burst)} different records within one hour, far above the user's usual.", batch)
    )
    events += batch

    # A past emergency: the paramedic broke the glass for one patient, read the summary and the chart.
    ems = users["ems"]
    grant_patient = unassigned[1 % len(unassigned)]
    granted = at(12, 3, 15)
    grant = BreakGlassGrant(
        user=ems,
        patient_id=grant_patient,
        reason=BreakGlassGrant.Reason.UNABLE_TO_CONSENT,
        explanation="Demo: found unresponsive at home, no history available.",
        granted_at=granted,
        expires_at=granted + datetime.timedelta(minutes=60),
        ended_at=granted + datetime.timedelta(minutes=38),
    )
    grant.save()
    history.grants = 1
    grant_detail = {"grant_id": grant.pk, "reason": grant.reason}
    grant_events = _view(
        ems,
        grant_patient,
        granted + datetime.timedelta(minutes=1),
        "break_glass",
        ("allergies", "medications", "conditions"),
        action="emergency_summary",
        purpose="emergency",
        detail=grant_detail,
    ) + _view(
        ems,
        grant_patient,
        granted + datetime.timedelta(minutes=6),
        "break_glass",
        CHART_SECTIONS,
        purpose="emergency",
        detail=grant_detail,
    )
    events += grant_events

    events.sort(key=lambda e: (e.at, e.patient_id or 0))
    seal_and_insert(events)
    history.access_events = len(events)

    # Sign-in trouble: forgotten passwords, a mistyped code, and one lockout of an unknown name.
    unknown = username_for_records("jsmith-typo")
    auth_rows = []
    for day, hour, username, event in (
        (2, 8, "nurse2", "login_failed"),
        (2, 8, "nurse2", "login_failed"),
        (6, 19, "physician", "otp_failed"),
        (10, 7, "lab", "login_failed"),
        (14, 23, unknown, "login_failed"),
        (14, 23, unknown, "login_failed"),
        (14, 23, unknown, "login_failed"),
        (14, 23, unknown, "login_failed"),
        (14, 23, unknown, "login_failed"),
        (14, 23, unknown, "lockout"),
        (19, 9, "front_desk", "otp_failed"),
        (20, 8, "nurse", "login_failed"),
    ):
        target = users.get(username)
        auth_rows.append(
            AuthEventRecord(
                at=at(day, hour, rng.randint(0, 59)),
                event=event,
                actor_id=None,
                target_id=target.pk if target else None,
                username=username,
                ip="198.51.100.7" if target is None else DEMO_IP.format(2),
                user_agent=DEMO_AGENT,
                detail={"demo": True},
            )
        )
    auth_rows.sort(key=lambda r: r.at)
    seal_and_insert(auth_rows)
    history.auth_events = len(auth_rows)

    _raise_alerts(history, grant=grant, start=start)
    # The history was written into the chain directly and judged by the scan above (or given its alerts
    # here): the sealer's judging (ANOMALY_RULES_AT = "sealer") starts after it, not over it again.
    nearline.catch_up()
    _work_some_alerts(users["security"])
    history.alerts = Alert.objects.count()
    return history


def _raise_alerts(history: History, *, grant: BreakGlassGrant, start: datetime.datetime) -> None:
    """Alerts from the history: by the anomaly rules' own scan when installed, otherwise made here."""
    if "scan_access" in get_commands():
        try:
            # A savepoint: a failing scan must not undo the history, and the fallback still runs.
            with transaction.atomic():
                call_command(
                    "scan_access", "--since", start.date().isoformat(), stdout=io.StringIO(), stderr=io.StringIO()
                )
            history.alerts_from_scan = True
        except Exception:  # the demo must still get alerts; the failure is logged
            logger.exception("scan_access failed during seed_demo; creating demo alerts directly")
    if Alert.objects.exists():
        return
    severities = {"bulk_browsing": Alert.Severity.HIGH, "break_glass": Alert.Severity.MEDIUM}
    for rule, reason, batch in history.suspicious:
        first = batch[0]
        alert = Alert(
            rule=rule,
            severity=severities.get(rule, Alert.Severity.MEDIUM),
            reason=reason,
            actor_id=first.actor_id,
            actor_username=first.actor_username,
            actor_role=first.actor_role,
            department_id=(
                User.objects.filter(pk=first.actor_id).values_list("department_id", flat=True).first()
                if first.actor_id is not None
                else None
            ),
            patient_id=None if rule == "bulk_browsing" else first.patient_id,
            occurred_at=first.at,
            created_at=first.at + datetime.timedelta(minutes=1),
            updated_at=first.at + datetime.timedelta(minutes=1),
        )
        alert.save()
        # Subjects: one event per access (the first section of each view), as the rules link them.
        seen: set[tuple[int | None, datetime.datetime]] = set()
        for event in batch:
            if (event.patient_id, event.at) in seen:
                continue
            seen.add((event.patient_id, event.at))
            AlertSubject.objects.get_or_create(
                rule=rule, kind=AlertSubject.Kind.ACCESS, object_id=event.pk, defaults={"alert": alert}
            )
    alert = Alert(
        rule="break_glass",
        severity=Alert.Severity.MEDIUM,
        reason="Emergency access (break the glass) to a patient with no care relationship; review the reason.",
        actor_id=grant.user_id,
        actor_username=grant.user.username,
        actor_role=grant.user.role,
        department_id=grant.user.department_id,
        patient_id=grant.patient_id,
        occurred_at=grant.granted_at,
        created_at=grant.granted_at,
        updated_at=grant.granted_at,
    )
    alert.save()
    AlertSubject.objects.get_or_create(
        rule="break_glass", kind=AlertSubject.Kind.GRANT, object_id=grant.pk, defaults={"alert": alert}
    )


def _work_some_alerts(security: User) -> None:
    """Move a few alerts along the workflow (audited like any analyst's work), so every state shows."""
    open_alerts = list(Alert.objects.filter(status=Alert.Status.OPEN).order_by("occurred_at", "id")[:4])
    if len(open_alerts) >= 1:
        alert_acknowledge(actor=security, alert_id=open_alerts[0].pk)
        alert_assign(actor=security, alert_id=open_alerts[0].pk, assignee=security)
        alert_note(actor=security, alert_id=open_alerts[0].pk, note="Demo: asked the ward manager for the rota.")
    if len(open_alerts) >= 2:
        alert_close(
            actor=security,
            alert_id=open_alerts[1].pk,
            resolution="justified",
            note="Demo: covering a colleague's patients that shift; confirmed by the ward manager.",
        )
    if len(open_alerts) >= 3:
        alert_close(
            actor=security,
            alert_id=open_alerts[2].pk,
            resolution="violation",
            note="Demo: no work reason; referred to HR and privacy office.",
        )
