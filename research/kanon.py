"""k-anonymity over quasi-identifiers: generalise the least, then suppress, or refuse.

Birth year, ZIP and sex together single out most people, so a Safe Harbor dataset is also checked
against linkage: every combination of quasi-identifier values that is released must be shared by at
least ``k`` rows (an *equivalence class* of size >= k).

How (full-domain generalisation with row suppression, after Samarati and Sweeney):

1. Each quasi-identifier has a generalisation hierarchy, from its finest released form (level 0)
   to ``"*"`` (its top level, always present): age 5-year band -> 10 -> 20 -> ``*``; sex -> ``*``;
   ZIP3 -> first two digits -> ``*``; year -> 5 years -> decade -> ``*``; callers add their own.
2. One pass counts the rows per combination of raw values (a ``Counter``; memory grows with the
   number of distinct combinations, not of rows), with the sensitive value when one is named.
3. The lattice of level vectors is walked in order of *information loss*: the generalisation
   height normalised per attribute and averaged, ``loss = mean(level_i / height_i)`` (0: nothing
   generalised, 1: every attribute ``*``; 1 - Sweeney's precision metric). For each vector the
   counted combinations are rolled up into classes; rows in classes smaller than ``k`` would be
   suppressed. The first vector whose suppression stays within ``max_suppression`` (a share of the
   rows) wins; among vectors of the same loss, the one suppressing fewest rows.
4. If none does, the release is refused (``KAnonymityRefused``): the population is smaller than k,
   or the caller capped how far an attribute may be generalised (``max_levels``) and within those
   caps too many rows would have to go.
5. A second pass (``apply``) rewrites each row's quasi-identifiers and drops the rows of small
   classes; other columns pass through untouched (the caller has made them safe already).

The report states the k reached (the smallest released class), the level chosen per attribute, the
rows suppressed, the loss, and the distinct l-diversity of a named sensitive attribute (the fewest
distinct sensitive values in any released class). Refusal messages hold counts only, never values.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

SUPPRESSED = "*"
DEFAULT_K = 5
DEFAULT_MAX_SUPPRESSION = 0.05
# Ages from 90 up are one category under Safe Harbor ("90+"); bands never split it.
_AGE_CAP = 90

Generaliser = Callable[[str], str]


class KAnonymityRefused(Exception):
    """The dataset cannot reach k without suppressing more rows than allowed; nothing is released."""


@dataclass(frozen=True)
class Hierarchy:
    """The generalisation levels of one quasi-identifier column.

    ``steps`` are (name, function) pairs from the finest released form to the coarsest before
    ``"*"``; the all-suppressing top level is appended here, so every hierarchy can reach one class.
    """

    attribute: str
    steps: tuple[tuple[str, Generaliser], ...]

    @property
    def height(self) -> int:
        return len(self.steps)

    def level_name(self, level: int) -> str:
        return "suppressed (*)" if level == self.height else self.steps[level][0]

    def generalise(self, value: str, level: int) -> str:
        return SUPPRESSED if level == self.height else self.steps[level][1](value)


def _identity(value: str) -> str:
    return value


def _age_value(value: str) -> int | None:
    text = value.strip()
    if text.endswith("+"):
        text = text[:-1]
    return int(text) if text.isascii() and text.isdigit() else None


def _age_band(width: int) -> Generaliser:
    def band(value: str) -> str:
        age = _age_value(value)
        if age is None:
            return value  # unknown stays its own category until "*"
        low = min(age, _AGE_CAP) // width * width
        high = low + width - 1
        # A band reaching 90 is open-ended: "90+" rows cannot be told apart from 90-99.
        return f"{low}+" if high >= _AGE_CAP else f"{low}-{high}"

    return band


def _year_band(width: int) -> Generaliser:
    def band(value: str) -> str:
        text = value.strip()
        if not (text.isascii() and text.isdigit()):
            return value
        low = int(text) // width * width
        return f"{low}-{low + width - 1}"

    return band


def _prefix(length: int) -> Generaliser:
    def cut(value: str) -> str:
        return value[:length] + SUPPRESSED

    return cut


def age_hierarchy(attribute: str = "age") -> Hierarchy:
    """Age in years (or "90+"): 5-year band -> 10-year -> 20-year -> ``*``."""
    return Hierarchy(
        attribute, (("5-year band", _age_band(5)), ("10-year band", _age_band(10)), ("20-year band", _age_band(20)))
    )


def sex_hierarchy(attribute: str = "sex") -> Hierarchy:
    """Sex: kept -> ``*``."""
    return Hierarchy(attribute, (("kept", _identity),))


def zip3_hierarchy(attribute: str = "zip3") -> Hierarchy:
    """Safe Harbor ZIP3: kept -> first two digits -> ``*``."""
    return Hierarchy(attribute, (("ZIP3", _identity), ("first two digits", _prefix(2))))


def year_hierarchy(attribute: str) -> Hierarchy:
    """A year: kept -> 5-year span -> decade -> ``*``."""
    return Hierarchy(attribute, (("year", _identity), ("5 years", _year_band(5)), ("decade", _year_band(10))))


def _grouping(groups: dict[str, str]) -> Generaliser:
    def group(value: str) -> str:
        return groups.get(value, SUPPRESSED)

    return group


def categorical_hierarchy(attribute: str, *groupings: Mapping[str, str]) -> Hierarchy:
    """A caller's attribute: kept -> each grouping in turn (value -> group; unmapped -> ``*``) -> ``*``."""
    steps: list[tuple[str, Generaliser]] = [("kept", _identity)]
    for number, grouping in enumerate(groupings, start=1):
        steps.append((f"grouping {number}", _grouping(dict(grouping))))
    return Hierarchy(attribute, tuple(steps))


def default_hierarchies(
    *, age: str = "age", sex: str = "sex", zip3: str = "zip3", first_encounter_year: str = "first_encounter_year"
) -> list[Hierarchy]:
    """The quasi-identifiers every dataset is checked over (issue 13), under the given column names."""
    return [age_hierarchy(age), sex_hierarchy(sex), zip3_hierarchy(zip3), year_hierarchy(first_encounter_year)]


@dataclass(frozen=True)
class KAnonymityReport:
    """What the privacy report states about one release."""

    k_requested: int
    k_reached: int
    levels: dict[str, int]
    level_names: dict[str, str]
    rows_in: int
    rows_released: int
    rows_suppressed: int
    max_suppression: float
    information_loss: float
    equivalence_classes: int
    sensitive_attribute: str | None = None
    l_diversity: int | None = None


@dataclass
class QuasiIdentifierCounts:
    """Rows counted per combination of raw quasi-identifier values (and sensitive value, if named).

    Feed it rows with ``add`` (one pass, any iterable), then ``plan`` the release.
    """

    hierarchies: Sequence[Hierarchy]
    sensitive: str | None = None
    counts: Counter[tuple[str, ...]] = field(default_factory=Counter)
    rows: int = 0

    def key(self, row: Mapping[str, str]) -> tuple[str, ...]:
        """The raw quasi-identifier values of ``row`` (a missing column is a ``KeyError``: fail closed)."""
        return tuple(row[h.attribute] for h in self.hierarchies)

    def add(self, row: Mapping[str, str]) -> None:
        key = self.key(row)
        if self.sensitive is not None:
            key = (*key, row[self.sensitive])
        self.counts[key] += 1
        self.rows += 1

    def add_all(self, rows: Iterable[Mapping[str, str]]) -> None:
        for row in rows:
            self.add(row)


@dataclass(frozen=True)
class Plan:
    """The chosen generalisation, the raw combinations whose rows are suppressed and those released."""

    hierarchies: tuple[Hierarchy, ...]
    levels: tuple[int, ...]
    suppressed_keys: frozenset[tuple[str, ...]]
    released_keys: frozenset[tuple[str, ...]]
    report: KAnonymityReport

    def apply(self, rows: Iterable[Mapping[str, str]]) -> Iterator[dict[str, str]]:
        """Yield each released row with its quasi-identifiers generalised; suppressed rows are dropped.

        A row whose combination was not counted when the plan was made is a ``ValueError``: its class
        size is unknown, so it cannot be released (fail closed).
        """
        memo: list[dict[str, str]] = [{} for _ in self.hierarchies]
        for row in rows:
            raw = tuple(row[h.attribute] for h in self.hierarchies)
            if raw in self.suppressed_keys:
                continue
            if raw not in self.released_keys:
                raise ValueError("A row was not counted when the release was planned; nothing more is released.")
            out = dict(row)
            for index, (hierarchy, level) in enumerate(zip(self.hierarchies, self.levels, strict=True)):
                value = raw[index]
                cached = memo[index].get(value)
                if cached is None:
                    cached = memo[index][value] = hierarchy.generalise(value, level)
                out[hierarchy.attribute] = cached
            yield out


def _loss(levels: tuple[int, ...], heights: Sequence[int]) -> Fraction:
    return sum((Fraction(level, height) for level, height in zip(levels, heights, strict=True)), Fraction(0)) / len(
        heights
    )


def plan_release(
    counts: QuasiIdentifierCounts,
    *,
    k: int = DEFAULT_K,
    max_suppression: float = DEFAULT_MAX_SUPPRESSION,
    max_levels: Mapping[str, int] | None = None,
) -> Plan:
    """Choose the least-loss generalisation that reaches ``k`` within ``max_suppression``, or refuse.

    ``max_levels`` caps how far named attributes may be generalised (a study that needs 10-year age
    bands at most: ``{"age": 1}``); with caps, a population may be refused even though it is not tiny.
    """
    if k < 2:
        raise ValueError("k must be at least 2.")
    if not 0 <= max_suppression < 1:
        raise ValueError("max_suppression is a share of the rows, from 0 up to (not including) 1.")
    hierarchies = tuple(counts.hierarchies)
    if not hierarchies:
        raise ValueError("k-anonymity needs at least one quasi-identifier.")
    if len({h.attribute for h in hierarchies}) != len(hierarchies):
        raise ValueError("Each quasi-identifier may have only one hierarchy.")
    if counts.rows == 0:
        raise KAnonymityRefused("There are no rows to release.")
    width = len(hierarchies)
    heights = [h.height for h in hierarchies]
    caps = dict(max_levels or {})
    unknown = set(caps) - {h.attribute for h in hierarchies}
    if unknown:
        raise ValueError(f"max_levels names attributes that are not quasi-identifiers: {sorted(unknown)}.")
    ceilings = [min(h.height, max(0, caps.get(h.attribute, h.height))) for h in hierarchies]
    allowed = int(max_suppression * counts.rows)
    # The lattice walk needs class sizes only: fold the sensitive value away, then keep the raw
    # combinations as one column per attribute, so each vector is rolled up with C-level map/zip.
    qi_counts: Counter[tuple[str, ...]] = Counter()
    for key, n in counts.counts.items():
        qi_counts[key[:width]] += n
    combos = list(qi_counts)
    weights = [qi_counts[key] for key in combos]
    columns = [[key[i] for key in combos] for i in range(width)]
    # Distinct raw values per attribute, generalised once per level rather than once per row.
    tables = [
        [{value: h.generalise(value, level) for value in set(columns[i])} for level in range(h.height + 1)]
        for i, h in enumerate(hierarchies)
    ]
    lattice = sorted(itertools.product(*(range(c + 1) for c in ceilings)), key=lambda v: (_loss(v, heights), v))

    def roll_up(levels: tuple[int, ...]) -> dict[tuple[str, ...], int]:
        generalised = [list(map(tables[i][level].__getitem__, columns[i])) for i, level in enumerate(levels)]
        classes: defaultdict[tuple[str, ...], int] = defaultdict(int)
        for key, n in zip(zip(*generalised, strict=True), weights, strict=True):
            classes[key] += n
        return classes

    best: tuple[int, tuple[int, ...], dict[tuple[str, ...], int]] | None = None
    best_loss: Fraction | None = None
    for levels in lattice:
        loss = _loss(levels, heights)
        if best_loss is not None and loss > best_loss:
            break  # every later vector loses more information
        classes = roll_up(levels)
        suppressed = sum(n for n in classes.values() if n < k)
        if suppressed <= allowed and (best is None or suppressed < best[0]):
            best, best_loss = (suppressed, levels, classes), loss
    if best is None:
        raise KAnonymityRefused(
            f"k={k} cannot be reached by generalising the quasi-identifiers as far as allowed and "
            f"suppressing at most {max_suppression:.1%} of the {counts.rows} rows; nothing is released."
        )
    suppressed, levels, chosen = best
    maps = [tables[i][level] for i, level in enumerate(levels)]

    def generalised(key: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(maps[i][key[i]] for i in range(width))

    suppressed_keys = frozenset(key for key in combos if chosen[generalised(key)] < k)
    released = {c: n for c, n in chosen.items() if n >= k}
    l_diversity: int | None = None
    if counts.sensitive is not None:
        values: defaultdict[tuple[str, ...], set[str]] = defaultdict(set)
        for key in counts.counts:
            qi = generalised(key)
            if qi in released:
                values[qi].add(key[width])
        l_diversity = min(len(v) for v in values.values())
    report = KAnonymityReport(
        k_requested=k,
        k_reached=min(released.values()),
        levels={h.attribute: level for h, level in zip(hierarchies, levels, strict=True)},
        level_names={h.attribute: h.level_name(level) for h, level in zip(hierarchies, levels, strict=True)},
        rows_in=counts.rows,
        rows_released=counts.rows - suppressed,
        rows_suppressed=suppressed,
        max_suppression=max_suppression,
        information_loss=float(_loss(levels, heights)),
        equivalence_classes=len(released),
        sensitive_attribute=counts.sensitive,
        l_diversity=l_diversity,
    )
    return Plan(hierarchies, levels, suppressed_keys, frozenset(combos) - suppressed_keys, report)


def k_anonymise(
    rows: Sequence[Mapping[str, str]],
    hierarchies: Sequence[Hierarchy],
    *,
    k: int = DEFAULT_K,
    max_suppression: float = DEFAULT_MAX_SUPPRESSION,
    sensitive: str | None = None,
    max_levels: Mapping[str, int] | None = None,
) -> tuple[list[dict[str, str]], KAnonymityReport]:
    """Return the released rows and the report for rows held in memory (two passes over ``rows``).

    Raises ``KAnonymityRefused`` when k needs more than ``max_suppression`` of the rows suppressed.
    For data too large to hold, count with ``QuasiIdentifierCounts``, ``plan_release``, then stream
    the rows again through ``Plan.apply``.
    """
    counts = QuasiIdentifierCounts(hierarchies, sensitive)
    counts.add_all(rows)
    plan = plan_release(counts, k=k, max_suppression=max_suppression, max_levels=max_levels)
    return list(plan.apply(rows)), plan.report
