"""The access rules run by the sealer, off the request path (``ANOMALY_RULES_AT = "sealer"``).

After the sealer has linked a batch of access events and COMMITTED it (audit/sealer.py), it judges the
access events sealed since the last judgement: the same facts and the same rules as ``scan_access`` and
as the request, with the rules' running state kept in memory between rounds (audit/detection/running.py:
each actor's window read once, then only what is new; docs/decisions/0009-anomaly-rules.md).

A durable cursor (``RulesCursor``: the chain ``seq`` of the last access event judged) is moved in the
transaction that writes that judgement's alerts. So a crash between sealing and judging leaves it
behind and the next run judges those events (at least once: ``alert_raise`` is idempotent), and in
normal running nothing is judged twice (the cursor row is locked while judging, which serialises
sealers). A rule that raises is a ``RuleFailure`` and the cursor still moves: the failure is the
record. Judging never runs inside the sealing transaction, so it can neither roll sealing back nor
hold its locks.
"""

from __future__ import annotations

import logging
from typing import Literal

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from audit.chain import SEAL_PARTITION, AuditChainHead
from audit.detection import running
from audit.detection.inline import Outcome, rule_failure_record
from audit.detection.running import judge_batch
from audit.models import AccessEvent, RulesCursor

logger = logging.getLogger(__name__)

STREAM = AccessEvent.STREAM
BATCH = 2000  # access events judged per transaction (the sealer's batch size)
ROUNDS = 5  # batches judged per sealer round at most: a backlog is worked off over the next rounds

RulesAt = Literal["request", "sealer", "off"]


def rules_at() -> RulesAt:
    """Where accesses are judged: in the request, by the sealer, or nowhere.

    ``ANOMALY_RULES_AT`` (healthcrypt/settings.py); ``ANOMALY_RULES_INLINE = False`` is the benchmarks'
    switch that turns the access rules off wherever they would run (bench/detection.py,
    bench/load/settings_no_rules.py), to measure what they cost.
    """
    if not getattr(settings, "ANOMALY_RULES_INLINE", True):
        return "off"
    return "sealer" if getattr(settings, "ANOMALY_RULES_AT", "request") == "sealer" else "request"


def judged_up_to() -> int:
    """The chain ``seq`` of the last access event judged (0: none yet)."""
    last = RulesCursor.objects.filter(stream=STREAM).values_list("last_seq", flat=True).first()
    return int(last or 0)


def unjudged() -> QuerySet[AccessEvent]:
    """Sealed access events the sealer has not judged yet."""
    return AccessEvent.objects.filter(partition=SEAL_PARTITION, seq__gt=judged_up_to())


def _lock_cursor() -> RulesCursor:
    cursor = RulesCursor.objects.select_for_update().filter(stream=STREAM).first()
    if cursor is None:
        cursor, _ = RulesCursor.objects.get_or_create(stream=STREAM)
        cursor = RulesCursor.objects.select_for_update().get(pk=cursor.pk)
    return cursor


def judge_sealed(*, batch: int = BATCH, rounds: int = ROUNDS) -> Outcome:
    """Judge the access events sealed since the cursor, ``batch`` at a time, at most ``rounds`` batches.

    Each batch is judged and the cursor moved in one transaction. Raises only if the database fails
    (the cursor then stays where it was and the next run judges the batch again).
    """
    outcome = Outcome()
    for _ in range(rounds):
        if _judge_batch(batch, outcome) < batch:
            break
    return outcome


def _judge_batch(batch: int, outcome: Outcome) -> int:
    """Judge the next ``batch`` sealed access events and move the cursor past them; returns how many."""
    if not unjudged().exists():
        return 0  # checked first, so that nothing is locked when there is nothing to do
    with transaction.atomic():
        cursor = _lock_cursor()
        rows = list(
            AccessEvent.objects.filter(partition=SEAL_PARTITION, seq__gt=cursor.last_seq)
            .order_by("seq")
            .values(*running.COLUMNS, "seq")[:batch]
        )
        if not rows:
            return 0
        first, last = cursor.last_seq + 1, int(rows[-1]["seq"])
        in_time = sorted(rows, key=lambda row: (row["at"], row["id"]))
        try:
            with transaction.atomic():
                found = judge_batch(in_time, first, last)
        except Exception as exc:
            # As inline: the facts could not be gathered; the failure is the record, and the batch
            # is not retried forever (``scan_access`` can judge it again once the cause is fixed).
            found = Outcome(failures=1)
            rule_failure_record("facts", STREAM, rows[0]["id"], exc)
        cursor.last_seq = last
        cursor.updated_at = timezone.now()
        cursor.save(update_fields=["last_seq", "updated_at"])
    running.judged(row["id"] for row in rows)
    for rule, n in found.findings.items():
        outcome.findings[rule] += n
    outcome.raised += found.raised
    outcome.failures += found.failures
    outcome.judged += found.judged
    outcome.candidates += found.candidates
    return len(rows)


def catch_up() -> None:
    """Move the cursor to the access chain's head without judging (the accesses were judged in their
    request, or the rules are off): so that switching to "sealer" later starts from now."""
    head = AuditChainHead.objects.filter(stream=STREAM, partition=SEAL_PARTITION).values_list("last_seq", flat=True)
    last = head.first()
    if not last:
        return
    if not RulesCursor.objects.filter(stream=STREAM, last_seq__lt=last).update(
        last_seq=last, updated_at=timezone.now()
    ):
        RulesCursor.objects.get_or_create(stream=STREAM, defaults={"last_seq": last})


def judge_after_sealing(sealed: int) -> Outcome | None:
    """The sealer's step after a round (``sealed``: access events it just sealed): judge them in
    "sealer" mode, otherwise keep the cursor at the head. Never raises: a failure is logged and the
    events stay unjudged until the next run (``verify_audit`` reports them once older than the delay)."""
    try:
        if rules_at() == "sealer":
            return judge_sealed()
        if sealed:
            catch_up()
    except Exception:
        logger.exception("judging sealed access events failed; they are judged by the next run")
    return None
