"""The audit sealer: links committed, unsealed events into their stream's hash chain (audit/chain.py).

Requests only insert events (with their macs). This links them, in batches of up to :data:`BATCH`, in
one transaction per batch: lock the stream's chain head, read the oldest unsealed rows, compute their
links, write each row's ``partition``/``seq``/``prev_hash``/``hash`` (the one UPDATE the append-only
triggers allow, on an unsealed row only) and move the head. A crash anywhere in between rolls the
whole batch back: the rows stay unsealed and the next run seals them; nothing is sealed twice, since
the head lock serialises sealers and the UPDATE requires the row to be still unsealed.

"Unsealed" is a state of the row (``hash`` empty, with a partial index), not "id above the last
sealed id": a long transaction can commit a lower id after higher ones were sealed.

Where it runs (docs/decisions/0006-audit-chain.md): ``manage.py seal_audit --loop`` beside the web
workers (systemd unit in docs/operations/database-roles.md), and after each commit in-process when
``AUDIT_SEAL_ON_COMMIT`` is on (SQLite, the demo). ``verify_audit`` reports rows left unsealed for longer
than ``AUDIT_SEAL_MAX_DELAY`` seconds.

With ``ANOMALY_RULES_AT = "sealer"`` (the default where this runs as its own process) the sealer also
judges the access events it sealed, once the sealing has committed (audit/detection/nearline.py);
``verify_audit`` reports sealed accesses left unjudged for longer than the same delay.
"""

from __future__ import annotations

import datetime
import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.db import connection, transaction

from audit.chain import SEAL_PARTITION, Chained, content_fields, extend, lock_head, row_mac
from audit.models import AccessEvent, AuthEventRecord, ChangeEvent

if TYPE_CHECKING:
    from audit.detection.inline import Outcome

logger = logging.getLogger(__name__)

SEALED_BY_SEALER: tuple[type[Chained], ...] = (AccessEvent, ChangeEvent, AuthEventRecord)
BATCH = 2000


class SealerConflict(RuntimeError):
    """Rows changed under the sealer (another writer sealed them): the batch is rolled back."""


@dataclass
class SealerRun:
    sealed: dict[str, int] = field(default_factory=dict)
    # What judging the sealed access events found ("sealer" mode, audit/detection/nearline.py); None: not judged.
    judged: Outcome | None = None

    @property
    def total(self) -> int:
        return sum(self.sealed.values())


def _apply(model: type[Chained], links: list[tuple[int, int, str, str]]) -> None:
    """Write ``(id, seq, prev_hash, hash)`` onto still-unsealed rows in one statement."""
    table = connection.ops.quote_name(model._meta.db_table)
    rows = ", ".join(["(%s, %s, %s, %s)"] * len(links))
    cast = "::bigint" if connection.vendor == "postgresql" else ""
    params: list[Any] = [value for row in links for value in row]
    sql = (  # table name from the model, values as parameters
        f"WITH v(id, seq, prev_hash, hash) AS (VALUES {rows}) "  # noqa: S608
        f"UPDATE {table} SET partition = %s, seq = v.seq{cast}, prev_hash = v.prev_hash, hash = v.hash "
        f"FROM v WHERE {table}.id = v.id{cast} AND {table}.hash = ''"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, SEAL_PARTITION])
        changed = cursor.rowcount
        if connection.vendor == "sqlite":  # its driver reports -1 for a statement that starts with WITH
            cursor.execute("SELECT changes()")
            (changed,) = cursor.fetchone()
        if changed != len(links):
            raise SealerConflict(f"{model.STREAM}: {changed} of {len(links)} rows sealed; batch rolled back")


def _mac_matches(model: type[Chained], mac: str, values: Sequence[Any]) -> bool:
    """Whether the row's mac is the application's HMAC of its content (a forged or edited row's is not)."""
    return bool(mac) and hmac.compare_digest(row_mac(model, values), mac)


def _alert_forged(model: type[Chained], forged: list[tuple[int, datetime.datetime]]) -> None:
    # Ids only in the log: the rows name users and patients, and a forged row may name anyone.
    logger.critical(
        "%d %s audit event(s) whose HMAC does not match their content were sealed (first ids: %s)",
        len(forged),
        model.STREAM,
        [pk for pk, _ in forged[:20]],
    )
    from audit.detection.inline import judge_forged_events

    judge_forged_events(model.STREAM, forged)


def seal_stream(model: type[Chained], *, batch: int = BATCH) -> int:
    """Seal every committed unsealed row of ``model``; returns how many. Idempotent; safe to run concurrently."""
    pending = model._default_manager.filter(hash="")
    names = content_fields(model)
    at = 2 + names.index("at")
    sealed = 0
    while pending.exists():  # checked first, so that nothing is locked when there is nothing to do
        with transaction.atomic():
            head = lock_head(model.STREAM, SEAL_PARTITION)
            rows = list(pending.order_by("id").values_list("pk", "mac", *names)[:batch])
            if not rows:
                break
            links = extend(head, model.STREAM, [row[1] for row in rows])
            _apply(model, [(row[0], *link) for row, link in zip(rows, links, strict=True)])
            # Sealed all the same (the chain pins them, verify_audit names them ALTERED), and alerted now.
            forged = [(row[0], row[at]) for row in rows if not _mac_matches(model, row[1], row[2:])]
            if forged:
                _alert_forged(model, forged)
        sealed += len(rows)
        if len(rows) < batch:
            break
    return sealed


def seal_events(*, batch: int = BATCH, judge: bool = True) -> SealerRun:
    """Seal every stream the requests write (access, change, auth); then, with ``ANOMALY_RULES_AT =
    "sealer"``, judge the access events sealed and not judged yet (after the sealing committed: a
    rule never rolls sealing back nor holds its locks; a failure there is logged, never raised).

    ``judge`` False: seal only (the loop judges every ``ANOMALY_RULES_JUDGE_INTERVAL`` seconds, not
    every round; what is sealed meanwhile is judged by the next judging round)."""
    from audit.detection.nearline import judge_after_sealing

    run = SealerRun()
    for model in SEALED_BY_SEALER:
        run.sealed[model.STREAM] = seal_stream(model, batch=batch)
    if judge:
        run.judged = judge_after_sealing(run.sealed.get(AccessEvent.STREAM, 0))
    return run


def seal_after_commit() -> None:
    """Seal right after the current transaction commits (``AUDIT_SEAL_ON_COMMIT``; at once outside one).

    A failure here is logged, never raised: the request's events are committed and will be sealed by the
    next run (or reported by ``verify_audit`` once older than the delay).
    """

    def run() -> None:
        try:
            seal_events()
        except Exception:
            logger.exception("sealing audit events after commit failed; they stay unsealed until the next run")

    transaction.on_commit(run)
