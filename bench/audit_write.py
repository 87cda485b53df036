"""Cost of the audit trail, measured against itself in the same run.

1. One chart view with auditing on vs off (receivers disconnected): the ratio is what auditing adds.
2. Events written per second by 1, 2, 4 and 16 concurrent writer processes, one event per
   transaction as in a request, on the configured database (PostgreSQL: DATABASE_URL). The chains
   are partitioned, so writers should not queue behind one lock: on 2 cores the 4-writer rate should
   be at least 1.6x the 1-writer rate. Afterwards the count must match exactly and every chain verify.
3. With --million: verify_audit over 1,000,000 events (target under 60 s on PostgreSQL).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/healthcrypt_bench .venv/bin/python -m bench.audit_write
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "healthcrypt.settings_test")

import django

django.setup()

from django.db import connection, connections
from django.test import Client
from django.test.utils import setup_test_environment

from audit import receivers
from audit.chain import seal_and_insert
from audit.models import AccessEvent
from audit.services import access_event_record
from audit.verify import verify_all
from records.signals import patient_data_accessed


def chart_cost(requests: int) -> tuple[float, float]:
    from bench.chart_view import build
    from tests.conftest import sign_in

    doctor, patient_id, _ = build(200, 20)
    client = sign_in(Client(), doctor)
    url = f"/patients/{patient_id}/"

    def median_ms() -> float:
        for _ in range(3):
            client.get(url)
        samples = []
        for _ in range(requests):
            start = time.perf_counter()
            assert client.get(url).status_code == 200
            samples.append(time.perf_counter() - start)
        return statistics.median(samples) * 1000

    on, off = [], []
    for _ in range(3):
        on.append(median_ms())
        # Auditing off: the signal is still sent, nobody stores it. Never possible in the app, where a
        # security check refuses to start without receivers; here only to measure the difference.
        patient_data_accessed.disconnect(dispatch_uid="audit.accessed")
        try:
            off.append(median_ms())
        finally:
            patient_data_accessed.connect(receivers.on_patient_data_accessed, dispatch_uid="audit.accessed")
    return statistics.median(on), statistics.median(off)


def _writer(count: int, start_at: float, results: multiprocessing.Queue[float]) -> None:
    connections.close_all()  # never share the parent's connection across a fork
    while time.time() < start_at:
        time.sleep(0.001)
    begin = time.perf_counter()
    for i in range(count):
        access_event_record(actor=None, patient_ids=[i], categories=["demographics"], action="view", purpose="bench")
    results.put(time.perf_counter() - begin)
    connections.close_all()


def writers_rate(writers: int, per_writer: int) -> tuple[float, int]:
    before = AccessEvent.objects.count()
    connections.close_all()
    ctx = multiprocessing.get_context("fork")
    results: multiprocessing.Queue[float] = ctx.Queue()
    start_at = time.time() + 0.5
    processes = [ctx.Process(target=_writer, args=(per_writer, start_at, results)) for _ in range(writers)]
    wall = time.perf_counter()
    for process in processes:
        process.start()
    for process in processes:
        process.join()
        if process.exitcode != 0:
            raise SystemExit(f"a writer failed with exit code {process.exitcode}")
    elapsed = time.perf_counter() - wall - 0.5
    written = AccessEvent.objects.count() - before
    return written / max(elapsed, 1e-9), written


def million(total: int) -> float:
    batch = 10_000
    remaining = total - AccessEvent.objects.count()
    while remaining > 0:
        n = min(batch, remaining)
        seal_and_insert(
            [
                AccessEvent(
                    actor_id=1,
                    actor_username="bench",
                    actor_role="physician",
                    patient_id=i,
                    category="demographics",
                    action="view",
                )
                for i in range(n)
            ]
        )
        remaining -= n
    start = time.perf_counter()
    problems, summary = verify_all()
    elapsed = time.perf_counter() - start
    if problems:
        raise SystemExit(f"verify found problems: {problems[:3]}")
    print(
        f"verify_audit over {summary.events:,} events in {summary.partitions} chains: {elapsed:.1f} s (target < 60 s)"
    )
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--per-writer", type=int, default=1500)
    parser.add_argument("--writers", default="1,2,4,16")
    parser.add_argument("--million", action="store_true", help="also verify 1,000,000 events")
    args = parser.parse_args()
    setup_test_environment()
    original = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, serialize=False)
    try:
        on, off = chart_cost(args.requests)
        print(f"chart view ({connection.vendor}): audit on {on:.2f} ms, off {off:.2f} ms, ratio {on / off:.2f}x")
        if connection.vendor == "postgresql":
            base = None
            total_expected = AccessEvent.objects.count()
            for writers in (int(w) for w in args.writers.split(",")):
                per = max(1, args.per_writer // max(1, writers // 4)) if writers > 4 else args.per_writer
                rate, written = writers_rate(writers, per)
                total_expected += writers * per
                if written != writers * per:
                    raise SystemExit(f"LOST OR DUPLICATED EVENTS: expected {writers * per}, found {written}")
                base = base or rate
                print(
                    f"{writers:>2} writer(s): {rate:8.0f} events/s  ({written} events, ratio {rate / base:.2f}x vs 1 writer)"
                )
            assert AccessEvent.objects.count() == total_expected
            problems, summary = verify_all()
            print(f"after the writers: {summary.events} events, {len(problems)} problems")
            if problems:
                raise SystemExit("verify_audit failed")
            if args.million:
                million(1_000_000)
        else:
            print("(concurrent writers and the million-event check need PostgreSQL: set DATABASE_URL)")
    finally:
        connections.close_all()
        connection.creation.destroy_test_db(original, verbosity=0)


if __name__ == "__main__":
    main()
