"""What the anomaly rules (audit/rules.py) read and return: frozen facts, findings and the rule record.

audit/facts.py builds these from the database (inline and in bulk); the rules never query. Every
name is importable from ``audit.rules`` too.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Access:
    """One access to judge: the event of one patient's chart view (or, for events written before
    events listed their sections, the first of that view's one-per-section events, with ``event_ids``
    naming them all). ``sections`` are the sections it showed (audit.models.sections_of)."""

    event_id: int
    event_ids: tuple[int, ...]
    actor_id: int | None
    actor_username: str
    actor_role: str
    patient_id: int
    action: str
    category: str
    explanation: str
    at: datetime.datetime
    sections: tuple[str, ...] = ()

    def shows(self, section: str) -> bool:
        """Whether this access showed ``section`` (its primary ``category`` when no list was given)."""
        return section in (self.sections or (self.category,))


@dataclass(frozen=True)
class ActorFacts:
    """The acting user: role, department, blind index of their surname, their own patient record."""

    department_id: int | None = None
    surname_index: str = ""
    own_patient_id: int | None = None
    address_index: str = ""


@dataclass(frozen=True)
class PatientFacts:
    """The patient, from plaintext flags and blind indexes only (nothing is decrypted)."""

    surname_index: str = ""
    address_index: str = ""
    confidential: bool = False
    deceased: bool = False
    staff_user_id: int | None = None


@dataclass(frozen=True)
class Baseline:
    """A user's or department's usual activity (audit.models.ActivityBaseline)."""

    usual_hours: frozenset[int] = frozenset()
    peak_patients_per_hour: int = 0
    events: int = 0


@dataclass(frozen=True)
class AccessFacts:
    """Everything the access rules read about one access."""

    actor: ActorFacts
    patient: PatientFacts
    user_baseline: Baseline | None
    department_baseline: Baseline | None
    local_hour: int
    # Open order of the kind and department a radiology/lab user needs (None: not such a user).
    open_order: bool | None
    # Distinct patients this user opened in the clock hour so far, this one included, and whether
    # this patient is new in that hour (so a round of 40 alerts once, at the crossing).
    patients_this_hour: int
    new_this_hour: bool
    # A name search by this user found this patient within SEARCH_OPEN_WINDOW before.
    found_by_name_search: bool


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: int
    reason: str


@dataclass(frozen=True)
class Rule:
    """A named rule with its base severity and its judging function."""

    name: str
    severity: int
    judge: Callable[..., Finding | None]
    kind: str = "access"
    doc: str = field(default="")


@dataclass(frozen=True)
class GrantFacts:
    """A break-the-glass grant and what its rules read."""

    grant_id: int
    user_id: int
    patient_id: int
    granted_at: datetime.datetime
    confidential: bool
    local_hour: int
    user_baseline: Baseline | None
    # Grants by the same user before this one (this one excluded) within each window.
    previous_in_day: int
    previous_in_week: int
