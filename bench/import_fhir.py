"""How close ``import_fhir`` runs to merely reading its input, in the same run (issue 12: at most 3x).

The baseline is what no importer can avoid: read each shared Synthea bundle, parse its JSON and
validate it against the official R4 JSON schema (jsonschema-rs, compiled once). The subject is
``exchange.fhir.importer.import_paths``: the same reading and validation plus the required-element
and reference checks, encryption of every value, the write of every row and of its change event,
one transaction per bundle. Each subject round runs inside an outer transaction rolled back at its
end, so every round imports the same records afresh (the sealer's work after commit is therefore not
in the figure). Baseline and subject alternate round by round (bench/interleave.py).

The import validates the next file in a second process while it writes the current one (on Linux,
with more than one file), so its wall clock uses the second core for validation; the baseline uses
one. The CPU time of each round, both processes together (getrusage of this process and of its
children, the validating process being ended with each import), is printed beside it: that ratio is
the work the import does per resource, whatever the cores.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/healthcrypt_bench .venv/bin/python -m bench.import_fhir [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "healthcrypt.settings_test")

import django

django.setup()

from django.conf import settings
from django.db import connection, connections, transaction
from django.test.utils import setup_test_environment

from accounts.models import User
from accounts.roles import Role
from bench.interleave import interleave, line, paired_ratio
from bench.replay import by_table, recording, replay
from exchange.fhir.importer import collect_files, import_paths
from exchange.fhir.validate import _schema

SAMPLES = Path(settings.BASE_DIR).parent / "shared" / "data" / "fhir" / "synthea-r4"


class _Rollback(Exception):
    pass


def _cpu_seconds() -> float:
    """User and system CPU of this process and of its children ended so far."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not SAMPLES.is_dir():
        raise SystemExit(f"The shared samples are absent ({SAMPLES}); nothing to measure.")
    files = collect_files([SAMPLES])
    resources = sum(len(json.loads(path.read_bytes()).get("entry", [])) for path in files)
    setup_test_environment()
    original = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, serialize=False)
    try:
        actor = User.objects.create_user(username="bench-importer", password=None, role=Role.FRONT_DESK)
        _, whole = _schema()

        def baseline() -> None:
            for path in files:
                assert whole.is_valid(json.loads(path.read_bytes()))

        def subject() -> None:
            try:
                with transaction.atomic():
                    summary = import_paths(files, actor=actor, progress=False)
                    assert not summary.failed
                    raise _Rollback
            except _Rollback:
                pass

        subject()  # warm: the first round reads the schema, the codes, the keys
        with recording() as notes:
            subject()
        spent: list[dict[str, float]] = []

        def floor() -> None:
            try:
                with transaction.atomic():
                    with connection.connection.cursor() as cursor:
                        spent.append(replay(notes, cursor))
                    raise _Rollback
            except _Rollback:
                pass

        written = sorted({by_table(statement) for statement in notes.statements} - {"reads", "savepoints"})
        untriggered: list[float] = []

        def floor_untriggered() -> None:
            # The same with every trigger of the tables written turned off for the transaction (the
            # direct-change guard, the append-only checks, the foreign keys'; the guards are ENABLE
            # ALWAYS, so session_replication_role would not do), partitions included; the DDL is rolled
            # back with the rest and is not in the figure (only the replay's own time is).
            try:
                with transaction.atomic():
                    with connection.connection.cursor() as cursor:
                        cursor.execute(
                            "SELECT c.oid::regclass::text FROM pg_catalog.pg_class c WHERE c.relname = ANY(%s) "
                            "UNION SELECT i.inhrelid::regclass::text FROM pg_catalog.pg_inherits i "
                            "JOIN pg_catalog.pg_class p ON p.oid = i.inhparent WHERE p.relname = ANY(%s)",
                            [written, written],
                        )
                        for (table,) in cursor.fetchall():
                            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER ALL")
                        untriggered.append(sum(replay(notes, cursor).values()))
                    raise _Rollback
            except _Rollback:
                pass

        cases = {"parse + schema-validate": baseline, "import_fhir": subject, "its statements, replayed": floor}
        with connection.cursor() as cursor:
            cursor.execute("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user")
            if cursor.fetchone()[0]:  # turning the foreign keys' triggers off needs a superuser
                cases["replayed, triggers off"] = floor_untriggered
        cpu: dict[str, list[float]] = {name: [] for name in cases}

        def counted(name: str, case: Callable[[], None]) -> Callable[[], None]:
            def run() -> None:
                before = _cpu_seconds()
                case()
                cpu[name].append(_cpu_seconds() - before)

            return run

        print(f"{connection.vendor}, {os.cpu_count()} cores: {len(files)} bundles, {resources:,} resources")
        timings = interleave(
            {name: counted(name, case) for name, case in cases.items()},
            rounds=args.rounds,
        )
        base = timings["parse + schema-validate"]
        per = 1e6 / resources
        for name, timing in timings.items():
            print(line(name, timing, per=per, unit="us/resource", baseline=None if timing is base else base))
        subject_timing = timings["import_fhir"]
        print(
            f"import_fhir: {resources / subject_timing.median:,.0f} resources/s, parse + validate "
            f"{resources / base.median:,.0f} resources/s: {paired_ratio(subject_timing, base):.2f}x (target <= 3x)"
        )
        replayed = timings["its statements, replayed"]
        print(
            f"The database's floor: {len(notes):,} statements, {notes.rows_copied:,} rows copied, "
            f"{paired_ratio(replayed, base):.2f}x parse + validate, "
            f"{replayed.median / subject_timing.median:.0%} of the import's wall clock"
        )
        together = statistics.median(
            s / (b + r) for s, b, r in zip(subject_timing.samples, base.samples, replayed.samples, strict=True)
        )
        print(f"    import_fhir against parse + validate + the floor: {together:.2f}x")
        if untriggered:
            with_triggers = statistics.median(sum(round_.values()) for round_ in spent[1:])
            without = statistics.median(untriggered[1:])
            print(
                f"    without the triggers: {without / with_triggers:.0%} of the floor's statements' time "
                f"({without * per:.1f} us/resource, {without / base.median:.2f}x parse + validate)"
            )
        # Per table, the median over the timed rounds (the warm-up round's is the first).
        tables = sorted({table for round_ in spent for table in round_})
        shares = {table: statistics.median(round_.get(table, 0.0) for round_ in spent[1:]) for table in tables}
        for table, seconds in sorted(shares.items(), key=lambda item: -item[1])[:10]:
            print(f"    {table:<32} {seconds * 1e3:8.1f} ms per round  ({seconds * per:6.1f} us/resource)")
        # The warm-up round is left out, as from the timings.
        subject_cpu, base_cpu = (
            statistics.median(cpu[name][1:]) for name in ("import_fhir", "parse + schema-validate")
        )
        print(
            f"CPU per round, both processes: import_fhir {subject_cpu * 1e3:,.0f} ms, parse + validate "
            f"{base_cpu * 1e3:,.0f} ms: {subject_cpu / base_cpu:.2f}x"
        )
    finally:
        connections.close_all()
        connection.creation.destroy_test_db(original, verbosity=0)


if __name__ == "__main__":
    main()
