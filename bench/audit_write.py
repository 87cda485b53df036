"""Cost of the audit trail, measured against itself in the same run, baseline and subject interleaved.

1. One chart view with auditing on vs off (receivers disconnected), alternating round by round
   (bench/interleave.py): the ratio is what auditing adds to the page.
2. Requests per second by 1, 2, 4 and 16 concurrent writer processes (PostgreSQL: DATABASE_URL),
   each request shaped like a chart view under ATOMIC_REQUESTS: in its own transaction it records
   the view's access events (one call, every section, through ``access_event_record``), then reads
   the patient's rows and keeps the transaction open for ``--work-ms`` (the decryption and rendering
   that follow the events in a real request), then commits. Whatever lock the write takes is held
   through that work, as in the application. The baseline is the same transaction without the
   events. Baseline and subject alternate in every round; the figures are min / median / max over
   rounds and the median of per-round ratios. The sleep stands in for rendering time: on 2 cores
   CPU work would cap any scaling at 2x, and CPU is not what this measures.
   Targets: the 4-writer subject rate at least 1.6x the 1-writer rate (no shared lock on the
   request path); the subject close to its baseline at every writer count. Afterwards the event
   count must match exactly and verify_audit must pass.
3. With --million: verify_audit over 1,000,000 events.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/healthcrypt_bench .venv/bin/python -m bench.audit_write
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from collections.abc import Callable

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "healthcrypt.settings_test")

import django

django.setup()

from django.db import connection, connections, transaction
from django.test import Client
from django.test.utils import setup_test_environment

from accounts.roles import DataCategory
from audit import receivers
from audit.chain import seal_and_insert
from audit.models import AccessEvent
from audit.sealer import seal_events
from audit.services import access_event_record
from audit.verify import verify_all
from bench.interleave import Timings, interleave, line
from records.models import Observation, Patient
from records.signals import patient_data_accessed

SECTIONS = [str(c) for c in DataCategory]  # what a physician's chart view shows


def chart_cost(requests: int, rounds: int) -> None:
    from bench.chart_view import build
    from tests.conftest import sign_in

    doctor, patient_id, _ = build(200, 20)
    client = sign_in(Client(), doctor)
    url = f"/patients/{patient_id}/"

    def views() -> None:
        for _ in range(requests):
            assert client.get(url).status_code == 200

    def audit_off() -> None:
        # Auditing off: the signal is still sent, nobody stores it. Never possible in the app, where a
        # security check refuses to start without receivers; here only to measure the difference.
        patient_data_accessed.disconnect(dispatch_uid="audit.accessed")
        try:
            views()
        finally:
            patient_data_accessed.connect(receivers.on_patient_data_accessed, dispatch_uid="audit.accessed")

    timings = interleave({"audit off": audit_off, "audit on": views}, rounds=rounds)
    per = 1000 / requests
    print(f"chart view ({connection.vendor}), {requests} views per case, {rounds} interleaved rounds")
    print(line("audit off", timings["audit off"], per=per, unit="ms/view"))
    print(line("audit on", timings["audit on"], per=per, unit="ms/view", baseline=timings["audit off"]))


def _request(patient_id: int, *, audit: bool, work: float) -> None:
    """One chart-view-shaped transaction: the events first (subject only), then the reads and the work."""
    with transaction.atomic():
        if audit:
            access_event_record(
                actor=None, patient_ids=[patient_id], categories=SECTIONS, action="view", purpose="treatment"
            )
        Patient.objects.filter(pk=patient_id).values_list("id", "row_uid").first()
        list(Observation.objects.filter(patient_id=patient_id).values_list("id")[:50])
        time.sleep(work)


def _writer(count: int, patient_id: int, audit: bool, work: float, start_at: float) -> None:
    connections.close_all()  # never share the parent's connection across a fork
    while time.time() < start_at:
        time.sleep(0.001)
    for _ in range(count):
        _request(patient_id, audit=audit, work=work)
    connections.close_all()


def pool(writers: int, requests: int, patient_id: int, *, audit: bool, work: float) -> Callable[[], None]:
    """A case for interleave(): ``requests`` requests split over ``writers`` processes started together."""

    def run() -> None:
        connections.close_all()
        ctx = multiprocessing.get_context("fork")
        per = max(1, requests // writers)
        processes = [
            ctx.Process(target=_writer, args=(per, patient_id, audit, work, time.time())) for _ in range(writers)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
            if process.exitcode != 0:
                raise SystemExit(f"a writer failed with exit code {process.exitcode}")

    return run


def writers_scaling(counts: list[int], requests: int, rounds: int, work_ms: float) -> None:
    from bench.chart_view import build

    patient_id = Patient.objects.values_list("pk", flat=True).first() or build(50, 5)[1]
    per_round = {w: max(1, requests // w) * w for w in counts}
    # What one view writes today (one row per section, or one row listing them): counted, not assumed.
    before = AccessEvent.objects.count()
    with transaction.atomic():
        access_event_record(actor=None, patient_ids=[patient_id], categories=SECTIONS, action="view")
    events_per_request = AccessEvent.objects.count() - before
    cases: dict[str, Callable[[], None]] = {}
    for w in counts:
        cases[f"baseline {w:>2}w"] = pool(w, requests, patient_id, audit=False, work=work_ms / 1000)
        cases[f"subject  {w:>2}w"] = pool(w, requests, patient_id, audit=True, work=work_ms / 1000)
    before = AccessEvent.objects.count()
    timings = interleave(cases, rounds=rounds, warmup=1)
    written = AccessEvent.objects.count() - before
    expected = sum(per_round[w] for w in counts) * events_per_request * (rounds + 1)
    print(
        f"\nrequests by concurrent writers ({connection.vendor}): {requests} requests per case, each its own "
        f"transaction: {events_per_request} access event(s) then {work_ms:.0f} ms of work; {rounds} interleaved rounds"
    )
    for w in counts:
        per = 1000 / per_round[w]
        base, subject = timings[f"baseline {w:>2}w"], timings[f"subject  {w:>2}w"]
        print(line(f"{w:>2} writer(s) baseline", base, per=per, unit="ms/request"))
        print(line(f"{w:>2} writer(s) subject", subject, per=per, unit="ms/request", baseline=base))
    one = counts[0]
    for w in counts[1:]:
        speedup = _rate(timings[f"subject  {w:>2}w"], per_round[w]) / _rate(
            timings[f"subject  {one:>2}w"], per_round[one]
        )
        base_speedup = _rate(timings[f"baseline {w:>2}w"], per_round[w]) / _rate(
            timings[f"baseline {one:>2}w"], per_round[one]
        )
        target = "  (target >= 1.6x)" if w == 4 else ""
        print(
            f"{w:>2} writers / {one} writer: subject {speedup:4.2f}x, baseline {base_speedup:4.2f}x (median rates){target}"
        )
    if written != expected:
        raise SystemExit(f"LOST OR DUPLICATED EVENTS: expected {expected}, found {written}")
    # No sealer ran beside the writers here: seal now, as `seal_audit --loop` would have within a second,
    # so verify_audit does not report the backlog as a sealer that is down.
    sealed = seal_events().total
    problems, summary = verify_all()
    print(
        f"after the writers: {written} new events as expected, {sealed} sealed afterwards; "
        f"verify: {summary.events} events, {len(problems)} problems"
    )
    if problems:
        raise SystemExit("verify_audit failed: " + "; ".join(str(p) for p in problems[:3]))


def _rate(timings: Timings, requests: int) -> float:
    return requests / timings.median


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
    print(f"verify_audit over {summary.events:,} events in {summary.partitions} chains: {elapsed:.1f} s")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=30, help="chart views per case and round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--writer-requests", type=int, default=320, help="requests per writer case and round")
    parser.add_argument("--work-ms", type=float, default=10.0, help="time a request keeps its transaction open")
    parser.add_argument("--writers", default="1,2,4,16")
    parser.add_argument("--million", action="store_true", help="also verify 1,000,000 events")
    args = parser.parse_args()
    setup_test_environment()
    original = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, serialize=False)
    try:
        chart_cost(args.requests, args.rounds)
        if connection.vendor == "postgresql":
            writers_scaling([int(w) for w in args.writers.split(",")], args.writer_requests, args.rounds, args.work_ms)
            if args.million:
                million(1_000_000)
        else:
            print("(concurrent writers and the million-event check need PostgreSQL: set DATABASE_URL)")
    finally:
        connections.close_all()
        connection.creation.destroy_test_db(original, verbosity=0)


if __name__ == "__main__":
    main()
