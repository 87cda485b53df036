from __future__ import annotations

import csv
import itertools
import random
from collections import Counter
from datetime import date

import pandas as pd
import pytest
from pycanon import anonymity

from research.kanon import (
    KAnonymityRefused,
    QuasiIdentifierCounts,
    age_hierarchy,
    categorical_hierarchy,
    default_hierarchies,
    k_anonymise,
    plan_release,
)
from research.output import write_csv
from research.safe_harbor import PatientDemographics, safe_harbor_demographics

QI = ["age", "sex", "zip3", "first_encounter_year"]
COLUMNS = ["pseudonym", *QI, "diagnosis"]
DIAGNOSES = ["E11.9", "I10", "J45.909", "N18.3", "F32.9", "C50.911", "K21.9", "M54.5"]
ZIPS = ["02139", "02446", "01970", "10001", "10025", "11201", "60614", "94103", "30301", "98101", "03601", "82301"]


def population(size: int, seed: int = 13) -> list[dict[str, str]]:
    """Safe Harbor rows of a synthetic population: the demographics go through the real transform."""
    rng = random.Random(seed)
    rows = []
    for n in range(size):
        record = PatientDemographics(
            mrn=f"M{n}",
            given_name="x",
            family_name="y",
            birth_date=date(rng.randint(1920, 2024), rng.randint(1, 12), rng.randint(1, 28)),
            sex=rng.choice(["female", "male", "female", "male", "other", "unknown"]),
            postal_code=rng.choice(ZIPS) if rng.random() > 0.05 else "n/a",
            state="MA",
        )
        released = safe_harbor_demographics(record, as_of=date(2026, 12, 6)).as_row()
        rows.append(
            {
                "pseudonym": f"rp_{n:08d}",
                "age": released["age"],
                "sex": released["sex"],
                "zip3": released["zip3"],
                "first_encounter_year": str(rng.randint(2005, 2026)),
                "diagnosis": rng.choice(DIAGNOSES),
            }
        )
    return rows


def read_back(path) -> pd.DataFrame:
    # Everything as text, and "" kept as a value (pandas would otherwise read it as a missing value
    # and drop it from pycanon's groupings).
    return pd.read_csv(path, dtype=str, keep_default_na=False)


@pytest.mark.parametrize("k", [5, 10])
def test_released_csv_is_k_anonymous_and_l_diverse_by_pycanon(tmp_path, k):
    rows = population(3000)
    released, report = k_anonymise(rows, default_hierarchies(), k=k, sensitive="diagnosis")
    out = tmp_path / "dataset.csv"
    assert write_csv(out, COLUMNS, released) == report.rows_released

    frame = read_back(out)
    assert len(frame) == report.rows_released == 3000 - report.rows_suppressed
    assert report.rows_suppressed <= 0.05 * 3000
    checked_k = anonymity.k_anonymity(frame, QI)
    assert checked_k >= k
    assert checked_k == report.k_reached
    assert anonymity.l_diversity(frame, QI, ["diagnosis"]) == report.l_diversity
    # The raw data was not k-anonymous to begin with: the check had work to do.
    assert anonymity.k_anonymity(pd.DataFrame(rows), QI) < k
    assert report.information_loss > 0
    assert set(report.levels) == set(QI)
    assert report.equivalence_classes == frame.groupby(QI).ngroups


def test_a_release_can_stream_from_a_file_in_two_passes(tmp_path):
    # The way a large dataset is released without holding it: count from the file, plan, then
    # stream the file again through the plan into the released file.
    source = tmp_path / "source.csv"
    write_csv(source, COLUMNS, population(2500, seed=8))
    counts = QuasiIdentifierCounts(default_hierarchies(), sensitive="diagnosis")
    with source.open(encoding="utf-8", newline="") as handle:
        counts.add_all(csv.DictReader(handle))
    plan = plan_release(counts, k=5)
    out = tmp_path / "released.csv"
    with source.open(encoding="utf-8", newline="") as handle:
        written = write_csv(out, COLUMNS, plan.apply(csv.DictReader(handle)))
    assert written == plan.report.rows_released
    frame = read_back(out)
    assert anonymity.k_anonymity(frame, QI) == plan.report.k_reached >= 5
    assert anonymity.l_diversity(frame, QI, ["diagnosis"]) == plan.report.l_diversity


def test_released_rows_keep_their_other_columns_and_lose_no_row_silently():
    rows = population(1000, seed=5)
    released, report = k_anonymise(rows, default_hierarchies(), sensitive="diagnosis")
    by_pseudonym = {row["pseudonym"]: row for row in rows}
    assert len(released) + report.rows_suppressed == len(rows)
    for row in released:
        assert row["diagnosis"] == by_pseudonym[row["pseudonym"]]["diagnosis"]


def test_a_cohort_smaller_than_k_is_refused_without_naming_anyone():
    rows = population(4)
    with pytest.raises(KAnonymityRefused) as refused:
        k_anonymise(rows, default_hierarchies(), k=5)
    message = str(refused.value)
    assert "k=5" in message
    for row in rows:
        assert row["pseudonym"] not in message
        assert f"'{row['zip3']}'" not in message


def test_an_empty_cohort_is_refused():
    with pytest.raises(KAnonymityRefused, match="no rows"):
        k_anonymise([], default_hierarchies())


def test_a_population_that_needs_too_much_suppression_within_its_caps_is_refused():
    # The study keeps sex and ZIP3 exactly. 100 rows share one cell; 10 rows (9%) are each alone in
    # their ZIP3 area, so within the caps k=5 needs them all suppressed: over the 5% limit.
    def row(zip3: str) -> dict[str, str]:
        return {"age": "42", "sex": "female", "zip3": zip3, "first_encounter_year": "2020", "diagnosis": "I10"}

    rows = [row("100") for _ in range(100)] + [row(f"{300 + n}") for n in range(10)]
    caps = {"sex": 0, "zip3": 0}
    with pytest.raises(KAnonymityRefused, match=r"at most 5\.0% of the 110 rows"):
        k_anonymise(rows, default_hierarchies(), k=5, max_levels=caps)
    # A 10% limit releases them with the 10 outliers suppressed...
    released, report = k_anonymise(rows, default_hierarchies(), k=5, max_suppression=0.10, max_levels=caps)
    assert (report.rows_suppressed, len(released), report.levels["zip3"]) == (10, 100, 0)
    # ...and without the caps ZIP3 is generalised instead.
    released, report = k_anonymise(rows, default_hierarchies(), k=5)
    assert (report.rows_suppressed, len(released), report.levels["zip3"]) == (0, 110, 1)  # "30*" holds the ten


def test_the_cheapest_sufficient_generalisation_is_chosen():
    # 5 ZIP3 areas x 2 sexes x 3 rows: every class has 3 rows. Either ZIP3 -> two digits (loss 1/8) or
    # sex -> "*" (loss 1/4) reaches k=5 without suppression; the cheaper one must win.
    rows = [
        {"age": "42", "sex": sex, "zip3": f"10{z}", "first_encounter_year": "2020", "diagnosis": "I10"}
        for sex in ("female", "male")
        for z in range(5)
        for _ in range(3)
    ]
    released, report = k_anonymise(rows, default_hierarchies(), k=5, max_suppression=0.0)
    assert report.levels == {"age": 0, "sex": 0, "zip3": 1, "first_encounter_year": 0}
    assert report.level_names["zip3"] == "first two digits"
    assert report.information_loss == pytest.approx(1 / 8)
    assert report.rows_suppressed == 0
    assert {(r["sex"], r["zip3"]) for r in released} == {("female", "10*"), ("male", "10*")}
    assert {r["age"] for r in released} == {"40-44"}


def test_no_cheaper_generalisation_than_the_chosen_one_reaches_k():
    # Brute force over the whole lattice: every vector with less loss fails k within the limit.
    rows = population(600, seed=21)
    hierarchies = default_hierarchies()
    counts = QuasiIdentifierCounts(hierarchies)
    counts.add_all(rows)
    chosen = plan_release(counts, k=5).report
    for levels in itertools.product(*(range(h.height + 1) for h in hierarchies)):
        loss = sum(level / h.height for level, h in zip(levels, hierarchies, strict=True)) / len(hierarchies)
        if loss >= chosen.information_loss - 1e-9:
            continue
        classes = Counter(
            tuple(h.generalise(r[h.attribute], lv) for h, lv in zip(hierarchies, levels, strict=True)) for r in rows
        )
        assert sum(n for n in classes.values() if n < 5) > 0.05 * len(rows)


def test_suppressing_a_few_outliers_beats_generalising_everyone():
    rows = [
        {"age": "42", "sex": "female", "zip3": "100", "first_encounter_year": "2020", "diagnosis": d}
        for d in DIAGNOSES * 12
    ]
    rows.append({"age": "90+", "sex": "male", "zip3": "000", "first_encounter_year": "2007", "diagnosis": "I10"})
    released, report = k_anonymise(rows, default_hierarchies(), k=5, sensitive="diagnosis")
    assert report.information_loss == 0
    assert report.rows_suppressed == 1
    assert report.k_reached == 96
    assert report.l_diversity == len(DIAGNOSES)
    assert all(r["age"] != "90+" for r in released)


def test_age_bands_never_split_90_plus():
    hierarchy = age_hierarchy()
    assert [hierarchy.generalise("87", level) for level in range(4)] == ["85-89", "80-89", "80+", "*"]
    assert [hierarchy.generalise("90+", level) for level in range(4)] == ["90+", "90+", "80+", "*"]
    assert [hierarchy.generalise("7", level) for level in range(4)] == ["5-9", "0-9", "0-19", "*"]


@pytest.mark.parametrize("unknown", ["", "unknown", "\u00b2"])
def test_unknown_ages_and_years_stay_their_own_category_until_suppressed(unknown):
    ages, years = default_hierarchies()[0], default_hierarchies()[3]
    assert [ages.generalise(unknown, level) for level in range(4)] == [unknown] * 3 + ["*"]
    assert [years.generalise(unknown, level) for level in range(4)] == [unknown] * 3 + ["*"]
    assert [years.generalise("2017", level) for level in range(4)] == ["2017", "2015-2019", "2010-2019", "*"]


def test_k_anonymity_without_quasi_identifiers_is_refused():
    with pytest.raises(ValueError, match="at least one quasi-identifier"):
        k_anonymise(population(20), [])


def test_two_hierarchies_for_one_column_are_refused():
    with pytest.raises(ValueError, match="only one hierarchy"):
        k_anonymise(population(20), [*default_hierarchies(), age_hierarchy()])


def test_a_caller_can_add_a_quasi_identifier_with_its_own_hierarchy(tmp_path):
    regions = {"MA": "Northeast", "NY": "Northeast", "IL": "Midwest", "CA": "West"}
    rows = population(2000, seed=3)
    rng = random.Random(4)
    for row in rows:
        row["state"] = rng.choice(list(regions))
    hierarchies = [*default_hierarchies(), categorical_hierarchy("state", regions)]
    released, report = k_anonymise(rows, hierarchies, k=5)
    assert "state" in report.levels
    out = tmp_path / "dataset.csv"
    write_csv(out, [*COLUMNS, "state"], released)
    assert anonymity.k_anonymity(read_back(out), [*QI, "state"]) >= 5


def test_a_row_without_a_quasi_identifier_is_an_error_not_a_pass():
    rows = population(10)
    del rows[3]["zip3"]
    with pytest.raises(KeyError):
        k_anonymise(rows, default_hierarchies())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"k": 1}, "k must"), ({"max_suppression": 1.0}, "max_suppression"), ({"max_levels": {"dob": 0}}, "dob")],
)
def test_bad_parameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        k_anonymise(population(20), default_hierarchies(), **kwargs)


def test_write_csv_refuses_an_existing_file_and_an_unchosen_column(tmp_path):
    out = tmp_path / "dataset.csv"
    out.write_text("x")
    with pytest.raises(FileExistsError):
        write_csv(out, ["a"], [{"a": "1"}])
    with pytest.raises(ValueError, match="fields not in fieldnames"):
        write_csv(tmp_path / "other.csv", ["a"], [{"a": "1", "mrn": "M1"}])
    assert (tmp_path / "other.csv").stat().st_mode & 0o777 == 0o600


def test_a_row_that_was_not_counted_is_never_released():
    # Planning on one population and applying the plan to another would release classes whose size
    # nobody checked.
    rows = population(200)
    counts = QuasiIdentifierCounts(default_hierarchies())
    counts.add_all(rows)
    plan = plan_release(counts)
    stranger = {**rows[0], "zip3": "999", "age": "3"}
    with pytest.raises(ValueError, match="not counted"):
        list(plan.apply([*rows, stranger]))
