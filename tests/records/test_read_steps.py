"""Reads in steps (records/selectors/access.py): an access is recorded before the read goes on, and the
reads of one page are recorded together, one event per patient, before any of them goes on.

The dashboard's own behaviour (one event per patient for all its panels, nothing shown when recording
fails) is in tests/audit/test_access_sections.py; these pin the mechanism with reads made up here.
"""

from __future__ import annotations

from typing import Any

import pytest

from records.selectors.access import Access, AccessNotRecorded, Steps, _merged, in_steps, recorded, run_together

ACTOR = object()


def _access(patient_ids: list[int | None], category: Any = "demographics", **kw: Any) -> Access:
    kw.setdefault("detail", {})
    return Access(actor=ACTOR, patient_ids=patient_ids, category=category, action="list", purpose="treatment", **kw)


class Journal:
    """What happened, in order: accesses recorded, reads that went on past them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, fail: bool = False) -> None:
        self.entries: list[tuple[str, Any]] = []

        def record(access: Access) -> None:
            if fail:
                raise AccessNotRecorded
            self.entries.append(("recorded", (tuple(access.patient_ids), access.categories, access.detail)))

        monkeypatch.setattr(Access, "record", record)

    def read(self, name: str, *accesses: Access) -> Steps[str]:
        for access in accesses:
            yield access
            self.entries.append(("went on", name))
        return name


def test_a_read_in_steps_records_each_access_before_it_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(monkeypatch)
    assert recorded(journal.read("chart", _access([1]), _access([1], "notes"))) == "chart"
    assert [kind for kind, _ in journal.entries] == ["recorded", "went on", "recorded", "went on"]


def test_a_failed_record_stops_the_read_where_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(monkeypatch, fail=True)
    with pytest.raises(AccessNotRecorded):
        recorded(journal.read("chart", _access([1])))
    assert journal.entries == []


def test_in_steps_is_the_read_as_one_call_and_its_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(monkeypatch)

    @in_steps
    def listing(*, patient_id: int) -> Steps[int]:
        yield _access([patient_id])
        return patient_id * 10

    assert listing(patient_id=4) == 40
    assert journal.entries == [("recorded", ((4,), ("demographics",), {}))]
    steps = listing.steps(patient_id=5)
    assert next(steps).patient_ids == [5]  # nothing recorded: the caller records it
    assert len(journal.entries) == 1


def test_reads_run_together_record_everything_before_any_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(monkeypatch)
    reads = [
        journal.read("mine", _access([1, 2], detail={"list": "my_patients"})),
        journal.read("counts"),  # reads nothing of a patient: runs to its end at once
        journal.read("ward", _access([2, 3], ("demographics", "encounters"), detail={"list": "ward"})),
    ]
    assert run_together(reads, page="dashboard") == ["mine", "counts", "ward"]
    kinds = [kind for kind, _ in journal.entries]
    assert kinds == ["recorded", "recorded", "recorded", "went on", "went on"]
    recorded_ = sorted(entry for kind, entry in journal.entries if kind == "recorded")
    # Patient 2 was in both lists: one access, both lists' sections and names.
    assert recorded_ == [
        ((1,), ("demographics",), {"list": "dashboard", "lists": ["my_patients"]}),
        ((2,), ("demographics", "encounters"), {"list": "dashboard", "lists": ["my_patients", "ward"]}),
        ((3,), ("demographics", "encounters"), {"list": "dashboard", "lists": ["ward"]}),
    ]


def test_when_the_page_cannot_be_recorded_no_read_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(monkeypatch, fail=True)
    reads = [journal.read("mine", _access([1])), journal.read("ward", _access([1]))]
    with pytest.raises(AccessNotRecorded):
        run_together(reads, page="dashboard")
    assert journal.entries == []
    for read in reads:  # closed: nothing is left suspended to be resumed later
        with pytest.raises(StopIteration):
            next(read)


def test_an_access_a_read_makes_after_the_first_is_recorded_on_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(monkeypatch)
    reads = [journal.read("two steps", _access([1], detail={"list": "a"}), _access([1], "notes"))]
    run_together(reads, page="dashboard")
    assert journal.entries == [
        ("recorded", ((1,), ("demographics",), {"list": "dashboard", "lists": ["a"]})),
        ("went on", "two steps"),
        ("recorded", ((1,), ("notes",), {})),
        ("went on", "two steps"),
    ]


def test_merging_keeps_the_first_reads_purpose_notes_the_others_and_unites_grants() -> None:
    mine = _access([7], explanation="", detail={"list": "my_patients"})
    grants = Access(
        actor=ACTOR,
        patient_ids=[7, 8],
        category="demographics",
        action="list",
        purpose="emergency",
        explanation="break_glass",
        detail={"list": "active_grants", "grant_ids": [31, 30]},
    )
    search = Access(actor=ACTOR, patient_ids=[None], category="demographics", action="search", purpose="registration")
    merged = {tuple(a.patient_ids): a for a in _merged([mine, grants, search], page="dashboard")}
    assert merged[(None,)] is search  # a search's own event names nobody: kept as it was
    both = merged[(7,)]
    assert (both.purpose, both.explanation) == ("treatment", "break_glass")
    assert both.detail == {
        "list": "dashboard",
        "lists": ["my_patients", "active_grants"],
        "grant_ids": [30, 31],
        "purposes": ["emergency", "treatment"],
    }
    assert merged[(8,)].purpose == "emergency"


def test_patients_whose_accesses_came_out_the_same_are_recorded_together() -> None:
    merged = _merged(
        [_access([1, 2, 3], detail={"list": "ward"}), _access([3], "medications", detail={"list": "due"})],
        page="dashboard",
    )
    assert sorted(tuple(a.patient_ids) for a in merged) == [(1, 2), (3,)]


def test_one_page_is_one_persons() -> None:
    other = Access(actor=object(), patient_ids=[1], category="demographics", action="list", purpose="treatment")
    with pytest.raises(ValueError, match="one person"):
        _merged([_access([1]), other], page="dashboard")
