"""Scrub identifiers out of a free-text clinical note: record-aware first, then patterns.

A research dataset drops notes unless its request asks for them scrubbed (docs/research/scrubbing.md).
Scrubbing has two layers, and a character is removed when either layer claims it:

1. **What the record itself knows** (``KnownIdentifiers``): the patient's and contacts' names (whole
   words, case- and diacritics-insensitive, with initials, and one typing slip away for longer names),
   the staff names the caller passes, MRN and every other identifier value (with or without
   separators), phone numbers (any formatting of the same digits), street and city, ZIP, email, and
   the record's dates in every common format.
2. **Patterns** for identifiers the record does not hold: any date with a day, phone-like numbers,
   emails, URLs, IPv4 addresses, SSN-like numbers, long digit runs and letter-digit IDs, labelled ids
   (``MRN: ...``, ``policy # ...``), ZIP codes after a state or a "ZIP" label, street addresses, a
   capitalised name after a title (``Dr. Okafor``), and ages over 89 (HIPAA's "90 or older").

Every regular expression here has bounded repetition or is anchored on a literal, and the costlier
checks (letter-digit IDs, misspelt names, phone digits) run in Python over tokens found by one linear
scan, so a pathological 1 MB note takes linear time, never catastrophic backtracking. ``scrub`` never
raises on odd text: any ``str`` in, a ``Scrubbed`` out.

What it cannot catch is stated in docs/research/scrubbing.md: a person the record does not know
(a neighbour's name with no title before it), or a rare free-text description of someone.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from research.scrub.known import KnownIdentifiers, fold, known_spans
from research.scrub.patterns import pattern_spans
from research.scrub.spans import ADDRESS, AGE, DATE, EMAIL, ID, IP, KINDS, NAME, PHONE, URL, ZIP, Span

__all__ = [
    "ADDRESS",
    "AGE",
    "DATE",
    "EMAIL",
    "ID",
    "IP",
    "KINDS",
    "NAME",
    "PHONE",
    "URL",
    "ZIP",
    "KnownIdentifiers",
    "Scrubbed",
    "Span",
    "scrub",
]


# When two claims overlap, the merged span takes the kind of the stronger claim (the lower number).
_PRIORITY = {EMAIL: 0, URL: 1, IP: 2, AGE: 3, DATE: 4, PHONE: 5, ADDRESS: 6, ZIP: 7, ID: 8, NAME: 9}


@dataclass(frozen=True)
class Scrubbed:
    """A scrubbed note: its text, how many identifiers of each kind were replaced, and where."""

    text: str
    replaced: Counter[str] = field(default_factory=Counter)
    spans: tuple[Span, ...] = ()


def scrub(text: str, known: KnownIdentifiers) -> Scrubbed:
    """Replace every identifier in ``text`` with a token naming its kind (``[NAME]``, ``[DATE]``...).

    Record-known identifiers and pattern matches are both found on the original text; overlapping
    claims merge into one replaced span (so no part of an identifier survives a partial match).
    """
    if not isinstance(text, str) or not text:
        return Scrubbed(text="" if not isinstance(text, str) else text)
    folded = fold(text)
    claims = [*known_spans(text, folded, known), *pattern_spans(text)]
    spans = _join_names(text, _merge(claims))
    out: list[str] = []
    position = 0
    replaced: Counter[str] = Counter()
    for span in spans:
        out.append(text[position : span.start])
        out.append(f"[{span.kind}]")
        replaced[span.kind] += 1
        position = span.end
    out.append(text[position:])
    return Scrubbed(text="".join(out), replaced=replaced, spans=tuple(spans))


_NAME_GAP = re.compile(r"[\s,\-]{1,3}")


def _join_names(text: str, spans: list[Span]) -> list[Span]:
    """Join names split only by a comma, space or hyphen ("Chen, Wei", "Alvarez-Ruiz") into one
    ``[NAME]``, so the replaced text does not show how many parts a name had."""
    joined: list[Span] = []
    for span in spans:
        if (
            joined
            and span.kind == NAME
            and joined[-1].kind == NAME
            and _NAME_GAP.fullmatch(text, joined[-1].end, span.start)
        ):
            joined[-1] = Span(joined[-1].start, span.end, NAME)
        else:
            joined.append(span)
    return joined


def _merge(claims: list[Span]) -> list[Span]:
    """Union overlapping claims; the merged span keeps the strongest claim's kind."""
    merged: list[Span] = []
    for span in sorted(claims, key=lambda s: (s.start, -s.end)):
        if span.end <= span.start:
            continue
        if merged and span.start < merged[-1].end:
            last = merged[-1]
            kind = min(last.kind, span.kind, key=lambda k: _PRIORITY[k])
            merged[-1] = Span(last.start, max(last.end, span.end), kind)
        else:
            merged.append(span)
    return merged
