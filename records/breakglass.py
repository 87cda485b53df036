"""Break the glass (DESIGN.md §8): emergency access to one patient's record, for a limited time.

The write path of emergency grants (records/services/ holds the rest of the write path). A user
whose role has ``break_glass`` states a reason (a choice and a few words), re-enters a one-time code
from their authenticator, and receives a grant for that one patient that lasts
``BREAK_GLASS_MINUTES``. While it is in force, records/permissions.py counts it as the relationship
(``explanation="break_glass"``); it never widens to another patient.

Creating and ending a grant are atomic: the grant row, its access event (``patient_data_accessed``,
action ``break_glass``, with the reason *code* and the grant id, never the free text) and the typed
signals ``break_glass_granted``/``break_glass_ended`` (audit raises the alert for review from the
first) all commit together or not at all (fail closed).
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.roles import Capability, has_capability
from accounts.services import second_factor_verify
from records.db import mark_actor
from records.models import BreakGlassGrant, Patient
from records.permissions import chart_access
from records.services import RecordNotFound
from records.signals import break_glass_ended, break_glass_granted, patient_data_accessed

logger = logging.getLogger(__name__)

# A reason of a few words at least ("unconscious after a fall"): shorter text says nothing a reviewer
# can check, and the choice list alone is too coarse to justify opening a stranger's record.
EXPLANATION_MIN_LENGTH = 10
EXPLANATION_MAX_LENGTH = 1000
# What the access events and signals call the whole record (a grant opens every section the role sees).
RECORD_CATEGORY = "record"
PURPOSE = "emergency"
WRONG_CODE = "That code is not right, or it has already been used. Codes change every 30 seconds."


class CodeRejected(ValidationError):
    """The one-time code was wrong, already used, or the authenticator is throttled. The caller counts
    it as a failed sign-in (django-axes), as the step-up page does."""


def _validated(reason: str, explanation: str) -> str:
    """The stripped free text, or a ValidationError naming each missing or unusable part."""
    errors: dict[str, str] = {}
    if reason not in BreakGlassGrant.Reason.values:
        errors["reason"] = "Choose the reason for emergency access."
    text = (explanation or "").strip()
    if len(text) < EXPLANATION_MIN_LENGTH:
        errors["explanation"] = (
            f"Say in a few words why you need this record now (at least {EXPLANATION_MIN_LENGTH} characters)."
        )
    elif len(text) > EXPLANATION_MAX_LENGTH:
        errors["explanation"] = f"Keep the explanation under {EXPLANATION_MAX_LENGTH} characters."
    if errors:
        raise ValidationError(errors)
    return text


def break_glass_grant(*, actor: Any, patient_id: int, reason: str, explanation: str, code: str) -> BreakGlassGrant:
    """Give ``actor`` emergency access to one patient, after a reason and a fresh one-time code.

    Raises PermissionDenied (role without ``break_glass``), RecordNotFound (no such patient),
    ValidationError (no reason, too short an explanation, access already held) or CodeRejected
    (wrong or replayed code). Every check runs before the code is verified, so a request that would
    fail anyway does not use up the code; nothing is written unless everything succeeds.
    """
    if not has_capability(actor, Capability.BREAK_GLASS):
        raise PermissionDenied("Your role does not allow emergency access.")
    if not Patient.objects.filter(pk=patient_id).exists():
        raise RecordNotFound
    text = _validated(reason, explanation)
    decision = chart_access(actor, patient_id)
    if decision.allowed:
        # Breaking the glass where a door is open would only add noise to the review queue.
        if decision.explanation == "break_glass":
            raise ValidationError("You already have emergency access to this patient.")
        raise ValidationError("You already have access to this patient's record: open the chart instead.")
    if decision.status == 403:  # pragma: no cover - every role with break_glass opens charts
        raise PermissionDenied("Your role does not allow emergency access.")
    # The code is checked outside the grant's savepoint: a wrong code's throttling (and a right
    # code's use, which refuses its replay) stays recorded even if the grant is then undone.
    if second_factor_verify(actor, code or "", allow_recovery=False) is None:
        raise CodeRejected({"otp_token": WRONG_CODE})
    now = timezone.now()
    with transaction.atomic():
        mark_actor(actor)
        grant = BreakGlassGrant(
            user=actor,
            patient_id=patient_id,
            reason=reason,
            explanation=text,
            granted_at=now,
            expires_at=now + datetime.timedelta(minutes=settings.BREAK_GLASS_MINUTES),
        )
        grant.full_clean()
        grant.save()
        patient_data_accessed.send(
            sender=BreakGlassGrant,
            actor=actor,
            patient_id=patient_id,
            patient_ids=(patient_id,),
            category=RECORD_CATEGORY,
            categories=(RECORD_CATEGORY,),
            action="break_glass",
            purpose=PURPOSE,
            explanation="break_glass",
            # The reason's code only: the free text may describe the patient's condition.
            detail={"grant_id": grant.pk, "reason": grant.reason, "expires_at": grant.expires_at.isoformat()},
        )
        break_glass_granted.send(sender=BreakGlassGrant, grant=grant, actor=actor)
    logger.info("Break-the-glass grant %s created for user %s", grant.pk, getattr(actor, "pk", None))
    return grant


def break_glass_end(*, actor: Any, grant_id: int) -> BreakGlassGrant:
    """End one of ``actor``'s own grants now. Raises RecordNotFound for anyone else's grant or an
    unknown id; a grant that is already over is returned unchanged (nothing to end, nothing sent)."""
    actor_id = getattr(actor, "pk", None)
    if actor_id is None:  # not a signed-in user: holds no grant
        raise RecordNotFound
    with transaction.atomic():
        grant = (
            BreakGlassGrant.objects.select_for_update()
            .filter(pk=grant_id, user_id=actor_id)
            .defer("explanation")
            .first()
        )
        if grant is None:
            raise RecordNotFound
        now = timezone.now()
        if grant.ended_at is not None or grant.expires_at <= now:
            return grant
        mark_actor(actor)
        grant.ended_at = now
        grant.save(update_fields=["ended_at"])
        patient_data_accessed.send(
            sender=BreakGlassGrant,
            actor=actor,
            patient_id=grant.patient_id,
            patient_ids=(grant.patient_id,),
            category=RECORD_CATEGORY,
            categories=(RECORD_CATEGORY,),
            action="break_glass_end",
            purpose=PURPOSE,
            explanation="break_glass",
            detail={"grant_id": grant.pk, "reason": grant.reason},
        )
        break_glass_ended.send(sender=BreakGlassGrant, grant=grant, actor=actor)
    return grant
