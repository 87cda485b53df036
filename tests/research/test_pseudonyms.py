from __future__ import annotations

import re
import uuid
from datetime import date, datetime, timezone
from itertools import pairwise

import pytest

from research.pseudonyms import PSEUDONYM_LENGTH, date_shift_days, pseudonym, shift

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
PATIENTS = [uuid.UUID(int=n * 7919 + 1) for n in range(2000)]


def test_a_pseudonym_is_stable_within_a_project():
    uid = PATIENTS[0]
    assert pseudonym(KEY, "diabetes-2026", uid) == pseudonym(KEY, "diabetes-2026", uuid.UUID(str(uid)))


def test_pseudonyms_differ_across_projects_for_every_patient():
    first = {pseudonym(KEY, "diabetes-2026", uid) for uid in PATIENTS}
    second = {pseudonym(KEY, "asthma-2026", uid) for uid in PATIENTS}
    assert len(first) == len(second) == len(PATIENTS)  # no collisions within a project
    assert not first & second  # no link across projects


def test_a_different_key_gives_unrelated_pseudonyms():
    assert {pseudonym(KEY, "p", uid) for uid in PATIENTS}.isdisjoint(
        {pseudonym(OTHER_KEY, "p", uid) for uid in PATIENTS}
    )


def test_a_pseudonym_has_a_fixed_form_and_shows_nothing_of_the_row_id():
    uid = PATIENTS[5]
    value = pseudonym(KEY, "p", uid)
    assert len(value) == PSEUDONYM_LENGTH
    assert re.fullmatch(r"rp_[a-z2-7]{32}", value)
    assert uid.hex[:8] not in value
    assert str(uid)[:8] not in value


def test_project_names_cannot_be_shifted_into_each_other():
    # "ab" + uid and "a" + "b"-prefixed bytes must not meet: the project is length-prefixed.
    assert pseudonym(KEY, "ab", PATIENTS[0]) != pseudonym(KEY, "a", PATIENTS[0])


@pytest.mark.parametrize("key", [b"", b"short", bytes(31)])
def test_a_short_key_is_refused(key):
    with pytest.raises(ValueError, match="at least 32 bytes"):
        pseudonym(key, "p", PATIENTS[0])
    with pytest.raises(ValueError, match="at least 32 bytes"):
        date_shift_days(key, "p", PATIENTS[0])


def test_a_pseudonym_needs_a_project():
    with pytest.raises(ValueError, match="project"):
        pseudonym(KEY, "", PATIENTS[0])


def test_date_shift_is_never_zero_and_stays_within_the_bound():
    shifts = [date_shift_days(KEY, "p", uid, max_days=30) for uid in PATIENTS]
    assert 0 not in shifts
    assert all(-30 <= s <= 30 for s in shifts)
    assert {s > 0 for s in shifts} == {True, False}  # both directions occur
    assert len(set(shifts)) == 60  # every non-zero shift in range occurs among 2,000 patients


def test_a_one_day_bound_still_shifts():
    assert {abs(date_shift_days(KEY, "p", uid, max_days=1)) for uid in PATIENTS[:50]} == {1}


def test_date_shift_is_stable_per_patient_per_project_and_differs_across_projects():
    uid = PATIENTS[3]
    assert date_shift_days(KEY, "p", uid) == date_shift_days(KEY, "p", uid)
    differing = sum(date_shift_days(KEY, "p", u) != date_shift_days(KEY, "q", u) for u in PATIENTS[:200])
    assert differing > 190


def test_date_shift_keeps_the_intervals_between_a_patients_dates():
    dates = [date(1961, 3, 14), date(2020, 2, 29), date(2025, 8, 9), date(2025, 12, 31)]
    for uid in PATIENTS[:100]:
        days = date_shift_days(KEY, "p", uid)
        shifted = [shift(d, days) for d in dates]
        assert all(s != d for s, d in zip(shifted, dates, strict=True))
        assert [b - a for a, b in pairwise(shifted)] == [b - a for a, b in pairwise(dates)]


def test_date_shift_moves_datetimes_too():
    moment = datetime(2025, 8, 9, 14, 30, tzinfo=timezone.utc)  # noqa: UP017
    assert shift(moment, -3) == datetime(2025, 8, 6, 14, 30, tzinfo=timezone.utc)  # noqa: UP017


def test_weekday_keeping_shifts_are_whole_weeks():
    day = date(2025, 8, 9)
    for uid in PATIENTS[:200]:
        days = date_shift_days(KEY, "p", uid, max_days=365, keep_weekday=True)
        assert days != 0
        assert days % 7 == 0
        assert abs(days) <= 365
        assert shift(day, days).weekday() == day.weekday()


@pytest.mark.parametrize(("max_days", "keep_weekday"), [(0, False), (-5, False), (6, True)])
def test_a_bound_too_small_to_shift_is_refused(max_days, keep_weekday):
    with pytest.raises(ValueError, match="max_days"):
        date_shift_days(KEY, "p", PATIENTS[0], max_days=max_days, keep_weekday=keep_weekday)
