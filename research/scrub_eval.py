"""Measure the note scrubber (research/scrub/) on an annotated corpus: recall per kind and overall,
recall on the identifiers the record knows, and precision on protected clinical words.

The corpus is a folder with ``records.json`` (one synthetic record per key: the ``PatientDemographics``
fields, ``contacts``, plus ``staff_names`` and ``dates`` the caller would read for the same record) and
``notes.json`` (``notes``: ``id``, ``record``, ``text``, ``identifiers`` as ``[kind, exact text,
known_to_record]`` and ``keep``: clinical words that must survive). Every occurrence of an annotated
text counts; an identifier counts as removed only when every character of it lies in a replaced span
(a partial removal, "[NAME]ensen", is a miss). A protected word counts as kept when no character of it
was replaced; occurrences inside an annotated identifier are not counted.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from research.safe_harbor import Contact, PatientDemographics
from research.scrub import KnownIdentifiers, Span, scrub


@dataclass(frozen=True)
class Miss:
    """An identifier that survived (or a protected word that did not), for the report: the note's
    id, the kind and the text (synthetic corpus text, never patient data)."""

    note: str
    kind: str
    text: str


@dataclass
class Evaluation:
    """Counts over a corpus; the ratios are properties."""

    notes: int = 0
    present: Counter[str] = field(default_factory=Counter)
    removed: Counter[str] = field(default_factory=Counter)
    known_present: int = 0
    known_removed: int = 0
    keep_present: int = 0
    keep_kept: int = 0
    missed: list[Miss] = field(default_factory=list)
    over_removed: list[Miss] = field(default_factory=list)

    @property
    def recall(self) -> float:
        """Identifiers removed / identifiers present, over every kind."""
        return _ratio(sum(self.removed.values()), sum(self.present.values()))

    @property
    def known_recall(self) -> float:
        """Recall on the identifiers the record itself knows."""
        return _ratio(self.known_removed, self.known_present)

    @property
    def precision(self) -> float:
        """Protected clinical words kept / protected words present."""
        return _ratio(self.keep_kept, self.keep_present)

    def recall_of(self, kind: str) -> float:
        """Recall on one kind of identifier."""
        return _ratio(self.removed[kind], self.present[kind])

    def table(self) -> str:
        """The figures as a Markdown table (docs/research/scrubbing.md carries a copy)."""
        rows = ["| kind | present | removed | recall |", "|---|---:|---:|---:|"]
        for kind in sorted(self.present):
            rows.append(f"| {kind} | {self.present[kind]} | {self.removed[kind]} | {self.recall_of(kind):.3f} |")
        total_present, total_removed = sum(self.present.values()), sum(self.removed.values())
        rows.append(f"| **all** | {total_present} | {total_removed} | {self.recall:.3f} |")
        rows.append(f"| known to the record | {self.known_present} | {self.known_removed} | {self.known_recall:.3f} |")
        rows.append("")
        rows.append(
            f"Precision on protected clinical words: {self.keep_kept}/{self.keep_present} = {self.precision:.3f} "
            f"({self.notes} notes)."
        )
        return "\n".join(rows)


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 1.0


def load_known(record: Mapping[str, Any]) -> KnownIdentifiers:
    """Build the scrubber's ``KnownIdentifiers`` from one corpus record."""
    demographics = PatientDemographics(
        mrn=record["mrn"],
        given_name=record["given_name"],
        family_name=record["family_name"],
        birth_date=date.fromisoformat(record["birth_date"]),
        sex=record["sex"],
        address_line=record.get("address_line", ""),
        city=record.get("city", ""),
        postal_code=record.get("postal_code", ""),
        state=record.get("state", ""),
        phone=record.get("phone", ""),
        email=record.get("email", ""),
        national_id=record.get("national_id", ""),
        emergency_contact_name=record.get("emergency_contact_name", ""),
        emergency_contact_phone=record.get("emergency_contact_phone", ""),
        identifiers=record.get("identifiers", {}),
        contacts=tuple(Contact(**c) for c in record.get("contacts", ())),
    )
    return KnownIdentifiers.from_demographics(
        demographics,
        staff_names=record.get("staff_names", ()),
        dates=[date.fromisoformat(d) for d in record.get("dates", ())],
    )


def _occurrences(text: str, needle: str) -> Iterator[tuple[int, int]]:
    start = text.find(needle)
    while start != -1:
        yield start, start + len(needle)
        start = text.find(needle, start + 1)


def _covered(spans: tuple[Span, ...], start: int, end: int) -> bool:
    """Every character of [start, end) lies inside a replaced span (spans are sorted, disjoint)."""
    position = start
    for span in spans:
        if span.start <= position < span.end:
            position = span.end
            if position >= end:
                return True
    return False


def _touched(spans: tuple[Span, ...], start: int, end: int) -> bool:
    return any(span.start < end and start < span.end for span in spans)


def evaluate(corpus: Path) -> Evaluation:
    """Scrub every note of the corpus with its record's identifiers and count what survived."""
    records = json.loads((corpus / "records.json").read_text(encoding="utf-8"))
    notes = json.loads((corpus / "notes.json").read_text(encoding="utf-8"))["notes"]
    known = {key: load_known(value) for key, value in records.items() if not key.startswith("_")}
    result = Evaluation()
    for note in notes:
        result.notes += 1
        text: str = note["text"]
        spans = scrub(text, known[note["record"]]).spans
        identifier_ranges: list[tuple[int, int]] = []
        for kind, needle, is_known in note["identifiers"]:
            for start, end in _occurrences(text, needle):
                identifier_ranges.append((start, end))
                result.present[kind] += 1
                result.known_present += int(is_known)
                if _covered(spans, start, end):
                    result.removed[kind] += 1
                    result.known_removed += int(is_known)
                else:
                    result.missed.append(Miss(note["id"], kind, needle))
        for word in note["keep"]:
            for start, end in _occurrences(text, word):
                if any(s < end and start < e for s, e in identifier_ranges):
                    continue
                result.keep_present += 1
                if _touched(spans, start, end):
                    result.over_removed.append(Miss(note["id"], "keep", word))
                else:
                    result.keep_kept += 1
    return result
