"""The per-transaction actor marker: ``v1:<actor>:<txid>:<mac>``, a keyed MAC over the transaction id and actor.

The application sets the marker before it changes a clinical row (records/db.py: ``mark_actor``); the
PostgreSQL change triggers (audit/guards.py) copy it, with the transaction id they run in, into each
``audit_directchange`` row. The database never holds ``AUDIT_MARKER_KEY``, so it cannot check the MAC;
the application does when it seals those rows (audit/sealing.py). A marker is *verified* only when

- its MAC is right (so it was made by someone holding the key: the application), and
- the transaction id it names is the one the row was written in (so it was not copied from another
  transaction: txids are 64-bit with an epoch and never repeat).

Anything else (empty, ``user:1`` typed in psql, a valid marker replayed) is a direct change.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from healthcrypt.crypto import decode_key

VERSION = "v1"
# 128 bits of HMAC-SHA256: forging needs 2**128 guesses, and each guess costs the attacker a write
# that is itself recorded.
MAC_HEX = 32
MAX_LENGTH = 200  # the width of DirectChange.actor_marker; the trigger cuts longer values


@dataclass(frozen=True)
class Marker:
    """What a verified marker says: who acted (``user:<id>`` or ``system:<job>``) in which transaction."""

    actor: str
    txid: int


@lru_cache(maxsize=1)
def _key() -> bytes:
    return decode_key(settings.AUDIT_MARKER_KEY, name="AUDIT_MARKER_KEY")


@receiver(setting_changed)
def _reset_key(*, setting: str, **kwargs: Any) -> None:
    if setting == "AUDIT_MARKER_KEY":
        _key.cache_clear()


def _mac(txid: int, actor: str) -> str:
    message = f"{VERSION}|{txid}|{actor}".encode()
    return hmac.new(_key(), message, hashlib.sha256).hexdigest()[:MAC_HEX]


def make_marker(*, actor: str, txid: int) -> str:
    """The marker for ``actor`` (``user:<id>`` / ``system:<job>``) in transaction ``txid``."""
    return f"{VERSION}:{actor}:{txid}:{_mac(txid, actor)}"


def verify_marker(marker: str, *, txid: int | None) -> Marker | None:
    """The marker's actor when its MAC is right and it names transaction ``txid``; None otherwise."""
    if txid is None or not marker.startswith(f"{VERSION}:"):
        return None
    try:
        head, claimed_txid, mac = marker.rsplit(":", 2)
        claimed = int(claimed_txid)
    except ValueError:
        return None
    actor = head[len(VERSION) + 1 :]
    if not actor or claimed != txid:
        return None
    if not hmac.compare_digest(mac, _mac(claimed, actor)):
        return None
    return Marker(actor=actor, txid=claimed)
