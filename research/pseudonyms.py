"""Keyed pseudonyms and per-patient date shifts for research datasets.

A pseudonym is an HMAC-SHA256, under the research key, of the project and the record's random row
id: the same patient gets the same pseudonym throughout one project (their rows link within a
dataset and across that project's releases) and unrelated pseudonyms in two projects (datasets of
two projects cannot be joined on it). Without the key it cannot be reversed or recomputed, and it is
not derived from anything about the person (164.514(c)): the row id is random.

The date shift is drawn the same way (another HMAC label, so knowing a pseudonym tells nothing of the
shift): a whole number of days in [-max_days, -1] or [1, max_days], the same for every date of one
patient in one project, so intervals between that patient's dates are kept; it is never 0, so no
date is published unshifted. ``keep_weekday`` draws a multiple of 7 days instead, so weekdays stay.
"""

from __future__ import annotations

import hashlib
import hmac
from base64 import b32encode
from datetime import date, timedelta
from typing import TypeVar
from uuid import UUID

PSEUDONYM_PREFIX = "rp_"
# 160 bits of the HMAC, base32: 32 characters, no padding. Collisions among even 10^9 patients are
# out of reach (birthday bound 2^80).
_PSEUDONYM_BYTES = 20
PSEUDONYM_LENGTH = len(PSEUDONYM_PREFIX) + 32
# A research key is a 256-bit secret like the keyring's other keys; anything shorter is refused.
MIN_KEY_BYTES = 32

# Domain separation: one key, two unrelated derivations.
_PSEUDONYM_LABEL = b"healthcrypt/research/pseudonym/v1"
_DATE_SHIFT_LABEL = b"healthcrypt/research/date-shift/v1"

D = TypeVar("D", bound=date)


def _digest(key: bytes, label: bytes, project: str, patient_uid: UUID) -> bytes:
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"The research key must be at least {MIN_KEY_BYTES} bytes.")
    if not project:
        raise ValueError("A pseudonym needs a project.")
    # Length-prefixed fields, so no (project, uid) pair can be made to collide with another.
    project_bytes = project.encode("utf-8")
    message = label + len(project_bytes).to_bytes(4, "big") + project_bytes + patient_uid.bytes
    return hmac.new(key, message, hashlib.sha256).digest()


def pseudonym(key: bytes, project: str, patient_uid: UUID) -> str:
    """Return the patient's pseudonym in ``project``: ``rp_`` and 32 lower-case base32 characters."""
    digest = _digest(key, _PSEUDONYM_LABEL, project, patient_uid)[:_PSEUDONYM_BYTES]
    return PSEUDONYM_PREFIX + b32encode(digest).decode("ascii").lower()


def date_shift_days(
    key: bytes, project: str, patient_uid: UUID, max_days: int = 365, *, keep_weekday: bool = False
) -> int:
    """Return the patient's date shift in ``project``: a non-zero number of days within ``max_days``.

    With ``keep_weekday`` the shift is a non-zero multiple of 7 (then ``max_days`` must be >= 7).
    """
    step = 7 if keep_weekday else 1
    choices = max_days // step
    if choices < 1:
        raise ValueError(f"max_days must be at least {step}.")
    digest = _digest(key, _DATE_SHIFT_LABEL, project, patient_uid)
    # 64 bits reduced modulo at most a few hundred: the bias is below 2^-50.
    magnitude = (int.from_bytes(digest[:8], "big") % choices + 1) * step
    return magnitude if digest[8] & 1 else -magnitude


def shift(value: D, days: int) -> D:
    """Move a date (or datetime) by ``days`` days."""
    return value + timedelta(days=days)
