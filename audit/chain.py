"""Tamper evidence for the audit trail: HMAC hash chains, one per (stream, partition).

Every event row carries ``partition``, ``seq``, ``prev_hash`` and ``hash``, where
``hash = HMAC-SHA256(AUDIT_HMAC_KEY, canonical(row) | prev_hash)`` and ``seq`` counts up from 1
within its partition. ``AuditChainHead`` holds each partition's last ``seq`` and ``hash``.

Why partitions (docs/decisions/0006-audit-chain.md): a single chain needs a single lock, held
from reading the head to committing the insert, so every request that writes an event would queue
behind every other. With ``AUDIT_CHAIN_PARTITIONS`` chains (default 16), each transaction picks one
at random and locks only that head row, so concurrent writers rarely wait for each other, and each
chain is still complete: a changed row breaks its own hash, a deleted row leaves a gap in ``seq`` or
a broken link, an inserted row has no valid HMAC (the key is not in the database) and a removed
tail no longer reaches the head. ``manage.py verify_audit`` checks all of it.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, TypeVar

from django.conf import settings
from django.core.signals import setting_changed
from django.db import models, transaction
from django.db.models import F
from django.dispatch import receiver
from django.utils import timezone

from healthcrypt.crypto import decode_key

GENESIS = "0" * 64
CHAIN_FIELDS = ("id", "partition", "seq", "prev_hash", "hash")


class AuditChainHead(models.Model):
    """The last link of one chain. Updated in the same transaction as the events it seals."""

    stream = models.CharField(max_length=16)
    partition = models.PositiveSmallIntegerField()
    last_seq = models.BigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default=GENESIS)

    class Meta:
        app_label = "audit"
        constraints = [models.UniqueConstraint(fields=["stream", "partition"], name="audit_chain_head_unique")]

    def __str__(self) -> str:
        return f"Chain {self.stream}/{self.partition} at {self.last_seq}"


class Chained(models.Model):
    """Abstract base of every audit event model: the chain columns."""

    STREAM = ""

    # Every chained model has its own ``at`` column (a DateTimeField); declared here for the sealer,
    # which stamps rows that have none. An annotation only: no column is added to the abstract base.
    at: datetime.datetime

    partition = models.PositiveSmallIntegerField(editable=False)
    seq = models.BigIntegerField(editable=False)
    prev_hash = models.CharField(max_length=64, editable=False)
    hash = models.CharField(max_length=64, editable=False)

    class Meta:
        abstract = True


_C = TypeVar("_C", bound=Chained)


def content_fields(model: type[Chained]) -> list[str]:
    """The columns a row's hash covers: every concrete column except the chain's own and the id."""
    return [f.attname for f in model._meta.concrete_fields if f.attname not in CHAIN_FIELDS]


def _canonical_value(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, dict | list | int | float | bool) or value is None:
        return value
    return str(value)


def canonical(model: type[Chained], values: dict[str, Any], partition: int, seq: int) -> bytes:
    """The bytes a row's HMAC covers: its content, its place in the chain, in a fixed order."""
    body = {}
    for field in model._meta.concrete_fields:
        if field.attname in CHAIN_FIELDS:
            continue
        value = values[field.attname]
        if isinstance(field, models.GenericIPAddressField) and value:
            value = field.get_prep_value(value)  # the form the database stores and returns (IPv6 normalised)
        body[field.attname] = _canonical_value(value)
    body["_stream"], body["_partition"], body["_seq"] = model.STREAM, partition, seq
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@lru_cache(maxsize=1)
def _key() -> bytes:
    return decode_key(settings.AUDIT_HMAC_KEY, name="AUDIT_HMAC_KEY")


def link_hash(model: type[Chained], values: dict[str, Any], partition: int, seq: int, prev_hash: str) -> str:
    message = canonical(model, values, partition, seq) + b"|" + prev_hash.encode()
    return hmac.new(_key(), message, hashlib.sha256).hexdigest()


@receiver(setting_changed)
def _reset_key(*, setting: str, **kwargs: Any) -> None:
    if setting == "AUDIT_HMAC_KEY":
        _key.cache_clear()


def partitions() -> int:
    return int(getattr(settings, "AUDIT_CHAIN_PARTITIONS", 16))


def seal_and_insert(rows: Sequence[_C], *, partition: int | None = None) -> list[_C]:
    """Link ``rows`` (all of one model) onto one chain and insert them, atomically.

    The chain is picked at random among ``partitions()``, unless ``partition`` names one (the
    direct-change seals keep a single chain: one sealer, and a total order of what it sealed).

    The head row is locked first with an UPDATE (which also takes SQLite's write lock before the read,
    so two SQLite writers cannot both read the same head), then read, extended and saved.
    """
    if not rows:
        return []
    with transaction.atomic():
        return _seal_and_insert(rows, partition)


def lock_head(stream: str, partition: int) -> AuditChainHead:
    """Lock (creating it if need be) and return the head of one chain, inside the caller's transaction."""
    heads = AuditChainHead.objects.filter(stream=stream, partition=partition)
    if not heads.update(last_seq=F("last_seq")):
        AuditChainHead.objects.get_or_create(stream=stream, partition=partition)
        heads.update(last_seq=F("last_seq"))
    return heads.get()


def _seal_and_insert(rows: Sequence[_C], partition: int | None) -> list[_C]:
    model = type(rows[0])
    if partition is None:
        partition = secrets.randbelow(partitions())
    heads = AuditChainHead.objects.filter(stream=model.STREAM, partition=partition)
    head = lock_head(model.STREAM, partition)
    now = timezone.now()
    seq, prev = head.last_seq, head.last_hash
    for row in rows:
        if getattr(row, "at", None) is None:
            row.at = now
        seq += 1
        values = {name: getattr(row, name) for name in content_fields(model)}
        row.partition, row.seq, row.prev_hash = partition, seq, prev
        row.hash = prev = link_hash(model, values, partition, seq, prev)
    created = model._default_manager.bulk_create(rows)
    heads.update(last_seq=seq, last_hash=prev)
    return list(created)
