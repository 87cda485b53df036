"""De-identification throughput and memory, against merely reading and writing the same rows.

    .venv/bin/python -m bench.deid [--rows 100000] [--small-rows 10000] [--rounds 3] [--k 5]

No database: the patients' demographics are generated in memory, deterministically (a seeded
``random.Random``), as ``research.safe_harbor.PatientDemographics`` with every identifier filled in and
a year of first encounter; a region of 40 ZIP codes in three states, ages 0-104 skewed to adults, two
main sexes. Generating them is the "read" on both sides. The audited database read that feeds a real
build (records/selectors/research.py) is not measured here: its cost is the chart read's
(bench/chart_view.py) per patient, in chunks.

Subject (what ``deid_export`` does after the read, streaming): pass 1 generates each patient,
applies Safe Harbor and the keyed pseudonym and counts the quasi-identifiers (age, sex, ZIP3, year of
first encounter); the release is planned (k-anonymity, least loss, suppression <= 5%); pass 2 generates
the patients again, de-identifies them, generalises/suppresses through the plan and writes the CSV.

Baseline, interleaved round by round (bench/interleave.py): one pass generating the same patients
and writing their raw rows (the same number of columns plus the identifiers) to a CSV.

Memory: the peak traced by ``tracemalloc`` of the subject at --small-rows and at --rows. The rows are
streamed, so the peak grows with the distinct quasi-identifier combinations, not with the rows.
"""

from __future__ import annotations

import argparse
import csv
import random
import secrets
import tempfile
import tracemalloc
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

from bench.interleave import interleave, line, paired_ratio
from research.kanon import QuasiIdentifierCounts, default_hierarchies, plan_release
from research.pseudonyms import pseudonym
from research.safe_harbor import PatientDemographics, safe_harbor_demographics

AS_OF = date(2026, 12, 6)
PROJECT = "bench"
ZIPS = [f"0{n}" for n in range(1701, 1721)] + [f"{n}" for n in range(10001, 10011)]
ZIPS += [f"{n}" for n in range(60601, 60611)]
STATES = {"01": "MA", "10": "NY", "60": "IL"}
COLUMNS = ["pseudonym", "age", "sex", "zip3", "first_encounter_year"]
RAW_COLUMNS = ["uid", "mrn", "given_name", "family_name", "birth_date", "sex", "postal_code", "state", "phone", "first"]


def patients(count: int, seed: int = 13) -> Iterator[tuple[uuid.UUID, PatientDemographics, int]]:
    """The same ``count`` patients every time for one seed: (row uid, demographics, first encounter year)."""
    rng = random.Random(seed)
    for n in range(count):
        age = min(104, int(rng.triangular(0, 104, 55)))
        birth = date(AS_OF.year - age - 1, rng.randint(1, 12), rng.randint(1, 28))
        postal = rng.choice(ZIPS)
        record = PatientDemographics(
            mrn=f"M{n:08d}",
            given_name=f"Given{n}",
            family_name=f"Family{n}",
            birth_date=birth,
            sex=rng.choice(("female", "male")) if rng.random() < 0.995 else "other",
            postal_code=postal,
            state=STATES[postal[:2]],
            phone=f"555-{n:07d}",
        )
        yield uuid.UUID(int=rng.getrandbits(128)), record, rng.randint(max(birth.year, 2005), 2026)


def _deidentified(rows: int, key: bytes) -> Iterator[dict[str, str]]:
    for uid, record, first in patients(rows):
        sh = safe_harbor_demographics(record, as_of=AS_OF)
        yield {
            "pseudonym": pseudonym(key, PROJECT, uid),
            "age": sh.age,
            "sex": sh.sex,
            "zip3": sh.zip3,
            "first_encounter_year": "" if sh.age == "90+" else str(first),
        }


def subject(rows: int, out: Path, key: bytes, k: int) -> int:
    """De-identify, k-anonymise and write ``rows`` patients; return the rows released."""
    counts = QuasiIdentifierCounts(default_hierarchies())
    counts.add_all(_deidentified(rows, key))
    plan = plan_release(counts, k=k)
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(plan.apply(_deidentified(rows, key)))
    return plan.report.rows_released


def baseline(rows: int, out: Path) -> int:
    """Generate the same patients and write their raw rows; return the rows written."""
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(RAW_COLUMNS)
        for uid, r, first in patients(rows):
            writer.writerow(
                [uid, r.mrn, r.given_name, r.family_name, r.birth_date, r.sex, r.postal_code, r.state, r.phone, first]
            )
    return rows


def peak(rows: int, out: Path, key: bytes, k: int) -> int:
    tracemalloc.start()
    try:
        subject(rows, out, key, k)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="patients timed, and the large memory run")
    parser.add_argument("--small-rows", type=int, default=10_000, help="patients of the small memory run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--k", type=int, default=5)
    args = parser.parse_args()
    key = secrets.token_bytes(32)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        released = subject(args.rows, out / "check.csv", key, args.k)
        timings = interleave(
            {
                "baseline": lambda: baseline(args.rows, out / "raw.csv"),
                "subject": lambda: subject(args.rows, out / "deid.csv", key, args.k),
            },
            rounds=args.rounds,
        )
        per = 1e6 / args.rows
        print(f"{args.rows:,} patients, k={args.k}: {released:,} released, {args.rows - released:,} suppressed")
        print(line("read + write raw rows", timings["baseline"], per=per, unit="us/row"))
        print(
            line(
                "Safe Harbor + pseudonym + k-anon",
                timings["subject"],
                per=per,
                unit="us/row",
                baseline=timings["baseline"],
            )
        )
        print(
            f"rows/s (median): subject {args.rows / timings['subject'].median:,.0f}, "
            f"baseline {args.rows / timings['baseline'].median:,.0f}; "
            f"ratio {paired_ratio(timings['subject'], timings['baseline']):.2f}x"
        )
        small = peak(args.small_rows, out / "small.csv", key, args.k)
        large = peak(args.rows, out / "large.csv", key, args.k)
        print(
            f"peak traced memory: {args.small_rows:,} rows {small / 2**20:.1f} MiB, "
            f"{args.rows:,} rows {large / 2**20:.1f} MiB (ratio {large / small:.2f})"
        )


if __name__ == "__main__":
    main()
