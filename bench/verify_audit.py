"""How close ``verify_audit`` runs to its floor, in the same run (issue 11: at most 1.5x the floor).

The floor is what no verifier can avoid: fetch the same rows with the same server-side cursor and
compute the two HMACs each row needs (its MAC over its content, its link), over messages built the
cheapest way Python has (``repr`` of the fetched tuple). The subject is ``audit.verify.verify_chains``:
the real canonical form, every comparison, segment joins and the head check; once in one process, once
with ``--jobs`` processes. Baseline and subjects alternate round by round (bench/interleave.py).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/healthcrypt_bench .venv/bin/python -m bench.verify_audit [--events 1000000]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "healthcrypt.settings_test")

import django

django.setup()

from django.db import connection, connections
from django.test.utils import setup_test_environment

from audit.chain import SEAL_PARTITION, _key, content_fields, seal_and_insert
from audit.models import AccessEvent
from audit.verify import FETCH, Summary, verify_chains
from bench.interleave import interleave, line, paired_ratio

BATCH = 20_000


def fill(total: int) -> float:
    """``total`` access events as requests write them (varied actors, patients, sections), sealed."""
    started = time.perf_counter()
    made = AccessEvent.objects.count()
    while made < total:
        n = min(BATCH, total - made)
        seal_and_insert(
            [
                AccessEvent(
                    actor_id=1 + (made + i) % 500,
                    actor_username=f"user{(made + i) % 500}",
                    actor_role="physician",
                    patient_id=(made + i) % 20_000,
                    category="demographics",
                    action="view",
                    purpose="treatment",
                    explanation="care_team",
                    detail={},
                    ip="10.1.2.3",
                    user_agent="Mozilla/5.0 (bench workstation)",
                    request_id=f"{made + i:032x}",
                    session_ref="s" * 16,
                )
                for i in range(n)
            ]
        )
        made += n
    return time.perf_counter() - started


def floor() -> int:
    key = _key()
    names = content_fields(AccessEvent)
    rows = (
        AccessEvent.objects.filter(partition=SEAL_PARTITION)
        .order_by("seq")
        .values_list("id", "seq", "prev_hash", "hash", "mac", *names)
    )
    count = 0
    for row in rows.iterator(chunk_size=FETCH):
        hmac.new(key, repr(row[5:]).encode(), hashlib.sha256).hexdigest()
        hmac.new(key, f"{row[4]}|{row[2]}|{row[1]}".encode(), hashlib.sha256).hexdigest()
        count += 1
    return count


def subject(jobs: int) -> int:
    summary = Summary()
    problems = verify_chains(summary, jobs=jobs)
    if problems:
        raise SystemExit(f"verify found problems: {problems[:3]}")
    return summary.events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    setup_test_environment()
    original = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, serialize=False)
    try:
        print(f"{connection.vendor}, {os.cpu_count()} cores: writing {args.events:,} sealed events ...")
        print(f"  written in {fill(args.events):.1f} s")
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("VACUUM ANALYZE audit_accessevent")
        assert floor() == args.events
        cases = {
            "floor (fetch + 2 HMACs)": floor,
            "verify_audit, 1 process": lambda: subject(1),
            f"verify_audit, {args.jobs} processes": lambda: subject(args.jobs),
        }
        timings = interleave(cases, rounds=args.rounds)
        base = timings["floor (fetch + 2 HMACs)"]
        per = 1e6 / args.events
        print(f"per event, over {args.rounds} interleaved rounds:")
        for name, timing in timings.items():
            print(line(name, timing, per=per, unit="us/event", baseline=None if timing is base else base))
        for name, timing in timings.items():
            if timing is not base:
                print(
                    f"{name}: {timing.median:.1f} s for {args.events:,} events, "
                    f"{paired_ratio(timing, base):.2f}x the floor (target <= 1.5x)"
                )
    finally:
        connections.close_all()
        connection.creation.destroy_test_db(original, verbosity=0)


if __name__ == "__main__":
    main()
