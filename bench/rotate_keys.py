"""Throughput and memory of ``manage.py rotate_keys``, against raw AES-GCM in the same run.

    .venv/bin/python -m bench.rotate_keys [--rows 10000] [--large-rows 100000] [--batch-size 500]

On a throwaway test database (SQLite in memory by default; DATABASE_URL picks PostgreSQL):

1. creates --rows Observations (four encrypted values each) under key ``old``;
2. prepends key ``new`` and times ``rotate_keys`` over them: values re-encrypted per second, against
   raw PyCA AES-GCM decrypt + encrypt of the same number of values (the cost of the cryptography
   alone; the rest is SQL and Python), as a ratio;
3. prepends another key and measures the peak traced memory (tracemalloc) of rotating the --rows
   rows, then grows the table to --large-rows rows and measures again. Rotation holds one batch at a
   time, so the two peaks should be about equal (ratio near 1.0) however big the table.
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import random
import re
import secrets
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "healthcrypt.settings_test")

import django

django.setup()

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.test.utils import setup_test_environment

from bench.interleave import Timings, line
from healthcrypt.crypto import generate_key
from records.crypto import family_name_index, mrn_index, name_dob_index
from records.models import Observation, Patient

# Its own test database name, so the bench never clobbers a test run's database on PostgreSQL.
TEST_DATABASE_NAME = "test_healthcrypt_bench_rotate_keys"
INSERT_BATCH = 2_000
LABS = (("718-7", "Haemoglobin", "g/dL"), ("2345-7", "Glucose", "mmol/L"), ("2160-0", "Creatinine", "umol/L"))


def add_observations(patient: Patient, count: int, rng: random.Random) -> None:
    """Insert ``count`` observations, encrypted under the current key, a batch at a time."""
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    for offset in range(0, count, INSERT_BATCH):
        batch = []
        for i in range(offset, min(offset + INSERT_BATCH, count)):
            code, display, unit = LABS[i % len(LABS)]
            batch.append(
                Observation(
                    patient=patient,
                    category=Observation.Category.LABORATORY,
                    loinc_code=code,
                    display=display,
                    value=f"{rng.uniform(1, 200):.1f}",
                    unit=unit,
                    effective_at=start + datetime.timedelta(minutes=i),
                )
            )
        Observation.objects.bulk_create(batch)


def rotate(batch_size: int) -> tuple[int, float]:
    """Run rotate_keys; return (values re-encrypted, seconds)."""
    out = io.StringIO()
    started = time.perf_counter()
    call_command("rotate_keys", "--no-progress", "--batch-size", str(batch_size), stdout=out, stderr=io.StringIO())
    elapsed = time.perf_counter() - started
    match = re.search(r"Re-encrypted (\d+) values", out.getvalue())
    assert match, out.getvalue()
    return int(match.group(1)), elapsed


def traced_peak(batch_size: int) -> tuple[int, int]:
    """Run rotate_keys under tracemalloc; return (values re-encrypted, peak traced bytes)."""
    tracemalloc.start()
    try:
        values, _ = rotate(batch_size)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return values, peak


def raw_aesgcm_seconds(count: int) -> float:
    """Decrypt + encrypt ``count`` values of the same sizes with bare AES-GCM (nonce per value)."""
    cipher = AESGCM(AESGCM.generate_key(bit_length=256))
    sealed = []
    for i in range(count):
        nonce = secrets.token_bytes(12)
        sealed.append((nonce, cipher.encrypt(nonce, LABS[i % len(LABS)][1].encode(), b"ctx")))
    started = time.perf_counter()
    for nonce, data in sealed:
        plaintext = cipher.decrypt(nonce, data, b"ctx")
        fresh = secrets.token_bytes(12)
        cipher.encrypt(fresh, plaintext, b"ctx")
    return time.perf_counter() - started


@contextmanager
def test_database() -> Iterator[None]:
    original_name = connection.settings_dict["NAME"]
    connection.settings_dict.setdefault("TEST", {})["NAME"] = TEST_DATABASE_NAME
    setup_test_environment()
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        yield
    finally:
        connection.creation.destroy_test_db(original_name, verbosity=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000, help="rows for the timing and the small memory run")
    parser.add_argument("--large-rows", type=int, default=100_000, help="rows for the large memory run")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of rotation and baseline")
    args = parser.parse_args()
    if args.large_rows < args.rows:
        parser.error("--large-rows must be at least --rows")

    rng = random.Random(20261121)
    ring = [f"old:{generate_key()}"]
    with test_database(), tempfile.TemporaryDirectory() as media:
        with override_settings(FIELD_ENCRYPTION_KEYS=",".join(ring), MEDIA_ROOT=media):
            birth_date = datetime.date(1961, 7, 14)
            patient = Patient.objects.create(
                mrn="B000001",
                given_name="Bench",
                family_name="Marker",
                birth_date=birth_date,
                sex=Patient.Sex.UNKNOWN,
                mrn_index=mrn_index("B000001"),
                name_dob_index=name_dob_index("Marker", birth_date),
                family_name_index=family_name_index("Marker"),
            )
            add_observations(patient, args.rows, rng)

        # Interleaved: each round rotates to a fresh key, then times bare AES-GCM over as many values
        # (the order alternates round by round), so drift lands on both sides alike.
        rotations: list[float] = []
        baselines: list[float] = []
        values = 0
        for index in range(args.rounds):
            ring.insert(0, f"r{index}:{generate_key()}")
            with override_settings(FIELD_ENCRYPTION_KEYS=",".join(ring), MEDIA_ROOT=media):
                if index % 2:
                    baselines.append(raw_aesgcm_seconds(values))
                    values, seconds = rotate(args.batch_size)
                else:
                    values, seconds = rotate(args.batch_size)
                    baselines.append(raw_aesgcm_seconds(values))
                rotations.append(seconds)
        subject, base = Timings("rotate_keys", tuple(rotations)), Timings("raw", tuple(baselines))

        ring.insert(0, f"new2:{generate_key()}")
        with override_settings(FIELD_ENCRYPTION_KEYS=",".join(ring), MEDIA_ROOT=media):
            small_values, small_peak = traced_peak(args.batch_size)
            add_observations(patient, args.large_rows - args.rows, rng)

        ring.insert(0, f"new3:{generate_key()}")
        with override_settings(FIELD_ENCRYPTION_KEYS=",".join(ring), MEDIA_ROOT=media):
            large_values, large_peak = traced_peak(args.batch_size)

    vendor = connection.vendor
    print(f"database: {vendor}, batch size {args.batch_size}, {os.cpu_count()} CPUs")
    print(f"rotation of {args.rows:,} Observations + 1 Patient: {values:,} values re-encrypted")
    print(f"{args.rounds} interleaved rounds (min / median / max; ratio = median of per-round ratios)")
    print(line("raw AES-GCM decrypt+encrypt", base, per=1e6 / values, unit="us/value"))
    print(line("rotate_keys", subject, per=1e6 / values, unit="us/value", baseline=base))
    print(f"rotate_keys median: {values / subject.median:,.0f} values/s")
    print(f"peak traced memory, {args.rows:>7,} rows ({small_values:>7,} values): {small_peak / 1024:8,.0f} KiB")
    print(f"peak traced memory, {args.large_rows:>7,} rows ({large_values:>7,} values): {large_peak / 1024:8,.0f} KiB")
    print(f"memory ratio large/small: {large_peak / small_peak:.2f} (rows ratio {args.large_rows / args.rows:.0f}x)")


if __name__ == "__main__":
    main()
