"""Load test: signed-in staff of several roles against gunicorn, with a plaintext baseline in the same run.

    .venv/bin/python -m bench.load.run --users 16 --duration 60 [--workers 4] [--rounds 2] [--patients 250]
        [--paced 60 --think 0.5,1.5]

What it does (bench/README.md has the figures):

1. Creates two PostgreSQL databases (``hc_load_subject``, ``hc_load_base``; dropped again unless
   ``--keep``), migrates, seeds the demo hospital (``seed_demo``: patients with stays, vitals,
   results, orders, notes, images, weeks of audit history) and load accounts of four roles with
   known TOTP secrets (bench/load/seed.py). The baseline database is a copy of the subject's, plus
   plaintext mirrors of the rows the pages show.
2. Starts the application the production way: gunicorn (``--workers``), DEBUG off, whitenoise with
   collected static files, fresh random keys in a temporary directory, and the audit sealer beside it
   (``manage.py seal_audit --loop --interval 0.5``). The baseline is the same gunicorn with the
   bench-only settings ``bench.load.settings_baseline`` (same pages from plaintext rows, no policy,
   no audit); a third server runs the subject with one worker, for the scaling figure.
3. Runs locust (bench/load/locustfile.py) against each in interleaved rounds (``--rounds`` of
   ``--duration / --rounds`` seconds each, the order rotated every round), so that drift on the
   machine lands on both sides. The users work without pause: 16 users keep 16 requests in flight,
   the servers saturated. With ``--paced``, more interleaved rounds of baseline and subject follow
   with the same users pausing ``--think`` seconds between pages: latency at a working pace.
4. Prints requests/s, p50/p95/p99 per page kind and overall, errors; the ratios subject/baseline and
   4 workers/1 worker; then checks that every successful chart response has its access events
   (and nothing more), waits for the sealer (bounded) to seal every event and, with the anomaly rules
   at the sealer (``--rules-at sealer``, the default: production's mode on PostgreSQL), to judge every
   sealed access, and runs ``verify_audit``. Exits non-zero if a
   check fails.

Throughput and latency are measured once every user has signed in (sign-in and step-up are
excluded from the figures, but sign-ins are real: Argon2, TOTP, lockout accounting).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.load.figures import Case, Round, latency_line, paired, print_case
from bench.load.processes import BIN, PY, ROOT, PrivateCluster, Server, psql, run, start_sealer

SIGN_IN_KINDS = {"sign-in", "step-up"}
ROLE_SHARES = (("physician", 6), ("nurse", 5), ("front_desk", 2), ("lab", 3))
CLASSES = {"physician": "Physician", "nurse": "Nurse", "front_desk": "FrontDesk", "lab": "Lab"}
SEAL_DELAY_LIMIT = 10.0  # seconds the sealer may take to catch up after the last request


def role_counts(users: int) -> dict[str, int]:
    """Users per role in the proportions of ROLE_SHARES (largest remainders), every role once if there is room."""
    total = sum(share for _, share in ROLE_SHARES)
    exact = {role: users * share / total for role, share in ROLE_SHARES}
    counts = {role: int(value) for role, value in exact.items()}
    for role in sorted(exact, key=lambda r: exact[r] - counts[r], reverse=True)[: users - sum(counts.values())]:
        counts[role] += 1
    return {role: count for role, count in counts.items() if count}


# --- one round of locust ----------------------------------------------------------------------------


def locust_round(
    case: str,
    server: Server,
    *,
    users: int,
    seconds: int,
    sign_in: float,
    tmp: Path,
    plan: Path,
    tag: str,
    steps: Path,
    think: tuple[float, float] | None = None,
) -> Round:
    """``seconds`` of work measured after every user has signed in (``sign_in`` seconds are allowed for it)."""
    counts = role_counts(users)
    out = tmp / f"round-{case}-{uuid.uuid4().hex[:8]}.json"
    env = {
        **os.environ,
        "LOAD_PLAN": str(plan),
        "LOAD_COUNTS": ",".join(f"{r}:{c}" for r, c in counts.items()),
        "LOAD_TAG": tag,
        "LOAD_OUT": str(out),
        "LOAD_STEPS": str(steps),
        "LOAD_REFERER": f"https://127.0.0.1:{server.port}/",
        "LOAD_THINK": f"{think[0]},{think[1]}" if think else "",
    }
    cmd = [
        str(BIN / "locust"),
        "-f",
        str(ROOT / "bench/load/locustfile.py"),
        "--headless",
        "--only-summary",
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{round(seconds + sign_in)}s",
        "--stop-timeout",
        "10",
        "--host",
        server.url,
        "--loglevel",
        "WARNING",
        *(CLASSES[r] for r in counts),
    ]
    with (tmp / f"locust-{case}.log").open("ab") as log:
        subprocess.run(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=False)
    if not out.exists():
        raise SystemExit(f"locust wrote no results for {case}: see {tmp / f'locust-{case}.log'}")
    data = json.loads(out.read_text())
    records = [tuple(r) for r in data["records"]]
    signed = data["signed_in"]
    start = max(signed) if signed else min((r[1] for r in records), default=0.0)
    work = [r for r in records if r[0] not in SIGN_IN_KINDS and r[1] >= start]
    end = max((r[1] + r[2] for r in work), default=start + 1)
    return Round(case, work, max(end - start, 1e-6), len(signed), data["chart_ok"], data["failures"])  # type: ignore[arg-type]


# --- the run ----------------------------------------------------------------------------------------


def environment(tmp: Path, db_url: str, settings: str) -> dict[str, str]:
    from healthcrypt.env import SECRET_GENERATORS

    keys = tmp / "keys"
    if not keys.exists():
        keys.mkdir(mode=0o700)
        for name, generate in SECRET_GENERATORS.items():
            (keys / name).write_text(generate())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "LOAD_"))}
    env.update({f"{name}_FILE": str(keys / name) for name in SECRET_GENERATORS})
    for name in SECRET_GENERATORS:
        env.pop(name, None)
    env.update(
        DJANGO_SETTINGS_MODULE=settings,
        DATABASE_URL=db_url,
        DEBUG="0",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        # As behind a TLS proxy: the proxy's X-Forwarded-Proto says HTTPS (the users send it), so the
        # production defaults stay on (Secure cookies, HTTPS redirect, HSTS) and the checks pass.
        BEHIND_TLS_PROXY="1",
        SITE_URL="https://127.0.0.1",
        STATIC_ROOT=str(tmp / "static"),
        MEDIA_ROOT=str(tmp / "media"),
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--duration", type=int, default=60, help="seconds per case, split over --rounds")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--patients", type=int, default=250)
    parser.add_argument("--quick", action="store_true", help="a small data set instead of seed_demo (the smoke run)")
    parser.add_argument(
        "--sign-in-seconds", type=float, help="time allowed for signing in before a round (default 2 + 0.4 s per user)"
    )
    parser.add_argument("--no-scaling", action="store_true", help="skip the 1-worker server (and its ratio)")
    parser.add_argument(
        "--paced",
        type=int,
        default=0,
        help="seconds per case (split over --rounds) of paced rounds after the saturation rounds: the same users"
        " pausing --think seconds between pages; latency at a working pace rather than at saturation (default 0: none)",
    )
    parser.add_argument("--think", default="0.5,1.5", help="a paced user's pause between pages, 'low,high' seconds")
    parser.add_argument(
        "--pg",
        default=os.environ.get("LOAD_PG", "private"),
        help="'private' (default): a throwaway cluster of its own; or a server URL, e.g. postgres://postgres@127.0.0.1:5432"
        " (the app refuses a cluster where the test runner's maintenance role exists)",
    )
    parser.add_argument("--pg-port", type=int, default=5499, help="port of the private cluster")
    parser.add_argument("--db-prefix", default="hc_load")
    parser.add_argument("--port", type=int, default=8701)
    parser.add_argument("--keep", action="store_true", help="keep the databases and the temporary directory")
    parser.add_argument(
        "--subject-settings",
        default="healthcrypt.settings",
        help="settings of the subject server (a diagnostic, e.g. bench.load.settings_no_rules: the inline rules off)",
    )
    parser.add_argument(
        "--rules-at",
        choices=["sealer", "request"],
        default="sealer",
        help="where the subject judges accesses (ANOMALY_RULES_AT; default sealer, production's on PostgreSQL)",
    )
    args = parser.parse_args(argv)
    if args.users < 1 or args.rounds < 1 or args.duration < args.rounds:
        parser.error("need at least one user, one round and one second per round")
    try:
        low, high = (float(x) for x in args.think.split(","))
    except ValueError:
        parser.error("--think is 'low,high' in seconds, e.g. 0.5,1.5")
    if not 0 <= low <= high:
        parser.error("--think needs 0 <= low <= high")
    think = (low, high)

    tmp = Path(tempfile.mkdtemp(prefix="hc-load-"))
    cluster = PrivateCluster(tmp, args.pg_port) if args.pg == "private" else None
    pg = cluster.url if cluster is not None else args.pg
    subject_db, base_db = f"{args.db_prefix}_subject", f"{args.db_prefix}_base"
    admin = f"{pg}/postgres"
    subject_env = environment(tmp, f"{pg}/{subject_db}", args.subject_settings)
    # Production's mode on PostgreSQL (a separate sealer, no sealing on commit), set explicitly so that
    # the caller's environment cannot change what is measured; the web workers and the sealer share it.
    subject_env.update(ANOMALY_RULES_AT=args.rules_at, AUDIT_SEAL_ON_COMMIT="0")
    base_env = environment(tmp, f"{pg}/{base_db}", "bench.load.settings_baseline")
    servers: list[Server] = []
    sealer: subprocess.Popen[bytes] | None = None
    failed: list[str] = []
    started = time.time()
    completed = False
    try:
        if cluster is not None:
            cluster.start()
            cluster.durable(False)
        print(f"setting up in {tmp} (databases {subject_db}, {base_db} on {pg})", flush=True)
        for db in (subject_db, base_db):
            psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)', admin)
        psql(f'CREATE DATABASE "{subject_db}"', admin)
        # Setup commands skip the system checks (the servers run them all when they start); static
        # files are collected meanwhile, they need no database.
        collect = subprocess.Popen(
            [PY, "manage.py", "collectstatic", "--noinput", "--verbosity", "0", "--skip-checks"],
            env=subject_env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        run([PY, "manage.py", "migrate", "--verbosity", "0", "--skip-checks"], subject_env)
        if args.quick:
            run([PY, "-m", "bench.load.seed", "quick", "--patients", str(args.patients)], subject_env)
        else:
            run(
                [PY, "manage.py", "seed_demo", "--force", "--skip-checks", "--patients", str(args.patients)],
                subject_env,
            )
        plan = tmp / "plan.json"
        counts = role_counts(args.users)
        mix = ",".join(f"{r}:{c}" for r, c in counts.items())
        run([PY, "-m", "bench.load.seed", "accounts", "--mix", mix, "--out", str(plan)], subject_env, quiet=False)
        # The baseline starts from the very same rows (ids included), then gets its plaintext mirrors.
        psql(f'CREATE DATABASE "{base_db}" TEMPLATE "{subject_db}"', admin)
        run([PY, "manage.py", "migrate", "--verbosity", "0", "--skip-checks"], base_env)
        run([PY, "-m", "bench.load.seed", "mirror"], base_env, quiet=False)
        if cluster is not None:
            cluster.durable(True)
        print(f"set up in {time.time() - started:.0f} s; users per role: {counts}", flush=True)

        servers = [
            Server("baseline", args.port, args.workers, base_env, tmp / "gunicorn-baseline.log"),
            Server("subject", args.port + 1, args.workers, subject_env, tmp / "gunicorn-subject.log"),
        ]
        if not args.no_scaling:
            servers.append(Server("subject-1w", args.port + 2, 1, subject_env, tmp / "gunicorn-subject-1w.log"))
        if collect.wait() != 0:
            raise SystemExit(
                f"collectstatic failed: {collect.stderr.read().decode()[-2000:] if collect.stderr else ''}"
            )
        for server in servers:
            server.launch()
        sealer = start_sealer(subject_env, tmp / "sealer.log", 0.5)
        for server in servers:
            server.wait_ready()

        tag = f"lt{uuid.uuid4().hex[:10]}"
        seconds = args.duration // args.rounds
        # Signing in (Argon2, one code per account and 30 s step) is not measured: time is allowed for it.
        sign_in = args.sign_in_seconds if args.sign_in_seconds is not None else 2 + 0.4 * args.users
        cases = {s.name: Case(s.name) for s in servers}
        steps = {s.name: tmp / ("steps-base" if s.name == "baseline" else "steps-subject") for s in servers}
        for path in steps.values():
            path.mkdir(exist_ok=True)
        by_name = {s.name: s for s in servers}

        def rounds(cases: dict[str, Case], seconds: int, think: tuple[float, float] | None) -> None:
            """``--rounds`` rounds of every case in ``cases``, the order rotated each round."""
            names = list(cases)
            label = f"{seconds} s, {args.users} users" + (f", think {args.think} s" if think else "")
            for index in range(args.rounds):
                shift = index % len(names)
                for name in names[shift:] + names[:shift]:
                    print(f"round {index + 1}/{args.rounds}: {cases[name].name} ({label})", flush=True)
                    cases[name].rounds.append(
                        locust_round(
                            f"{name}-paced" if think else name,
                            by_name[name],
                            users=args.users,
                            seconds=seconds,
                            sign_in=sign_in,
                            tmp=tmp,
                            plan=plan,
                            tag=tag,
                            steps=steps[name],
                            think=think,
                        )
                    )

        rounds(cases, seconds, None)
        # The paced rounds: baseline and subject (4 workers) only, the same users pausing between pages.
        paced = {name: Case(f"{name} (paced)") for name in ("baseline", "subject")} if args.paced else {}
        if paced:
            rounds(paced, args.paced // args.rounds, think)
        last_request = time.time()
        # The sealer must catch up within a bounded delay after the last request (servers still up).
        status = json.loads(
            run(
                [
                    PY,
                    "-m",
                    "bench.load.seed",
                    "status",
                    "--tag",
                    tag,
                    "--wait",
                    str(SEAL_DELAY_LIMIT),
                    "--since",
                    str(last_request),
                ],
                subject_env,
            )
        )
        for server in servers:
            server.stop()

        print(
            f"\n=== Load test: {args.users} users, {seconds} s x {args.rounds} rounds per case, "
            f"gunicorn {args.workers} workers, PostgreSQL, {os.cpu_count()} cores ==="
        )
        for case in cases.values():
            print_case(case)
        base, subject = cases["baseline"], cases["subject"]
        print("\nsubject / baseline (median of per-round ratios):")
        print(f"  throughput {paired(subject, base):.2f}x  (target >= 0.80)")
        for kind in subject.kinds():
            print(latency_line(subject, base, kind))
        print(latency_line(subject, base) + "  (target p99 < 250 ms)")
        if "subject-1w" in cases:
            print(
                f"  {args.workers} workers / 1 worker (subject): {paired(subject, cases['subject-1w']):.2f}x  (target >= 1.7x)"
            )
        if paced:
            subject_paced, base_paced = paced["subject"], paced["baseline"]
            for case in paced.values():
                print_case(case)
            print(f"\npaced (think {args.think} s), subject / baseline:")
            print(f"  throughput {paired(subject_paced, base_paced):.2f}x (the users' pace bounds both)")
            print(latency_line(subject_paced, base_paced))
        # Sign-in requests count too: a refused sign-in or a 503 behind it is a failure of the run.
        errors = sum(sum(r.failures.values()) for c in [*cases.values(), *paced.values()] for r in c.rounds)
        if errors:
            failed.append(f"{errors} failed requests")

        # Every successful chart response must have its access events, and no chart view any other.
        subject_cases = [c for name, c in cases.items() if name != "baseline"] + ([paced["subject"]] if paced else [])
        chart_ok = sum(r.chart_ok for case in subject_cases for r in case.rounds)
        print(
            f"\nchart views answered 200 (subject): {chart_ok}; recorded: {status['chart_views']} views in "
            f"{status['chart_events']} access events"
        )
        if status["chart_views"] != chart_ok or (status["one_event_per_view"] and status["chart_events"] != chart_ok):
            failed.append("chart responses and recorded chart views differ")
        if status["sealed_after"] is not None:
            print(
                f"every event sealed {status['sealed_after']:.1f} s after the last request (limit {SEAL_DELAY_LIMIT:.0f} s)"
            )
        else:
            print(f"events still unsealed {SEAL_DELAY_LIMIT:.0f} s after the last request: {status['unsealed']}")
        if status["unsealed"]:
            failed.append(f"events still unsealed after {SEAL_DELAY_LIMIT:.0f} s")
        # With the rules at the sealer, it must also have judged every sealed access within the same delay.
        if status.get("rules_at") == "sealer":
            if status["judged_after"] is not None:
                print(
                    f"every access judged by the sealer {status['judged_after']:.1f} s after the last request; "
                    f"{status['access_alerts']} access alert(s), {status['rule_failures']} rule failure(s)"
                )
            else:
                print(f"accesses still unjudged {SEAL_DELAY_LIMIT:.0f} s after the last request: {status['unjudged']}")
                failed.append(f"accesses still unjudged after {SEAL_DELAY_LIMIT:.0f} s")
        elif "rules_at" in status:
            print(f"accesses judged: {status['rules_at']} (ANOMALY_RULES_AT / the rules-off switch)")
        if sealer is not None:
            sealer.terminate()
            sealer.wait(timeout=20)
            sealer = None
        verify = subprocess.run(
            [PY, "manage.py", "verify_audit"], env=subject_env, cwd=ROOT, capture_output=True, text=True, check=False
        )
        print(f"verify_audit: exit {verify.returncode}; {(verify.stdout.strip().splitlines() or [''])[-1]}")
        if verify.returncode != 0:
            sys.stderr.write(verify.stdout[-3000:] + verify.stderr[-3000:])
            failed.append("verify_audit failed")
        completed = True
    finally:
        for server in servers:
            server.stop()
        if sealer is not None:
            sealer.terminate()
            sealer.wait(timeout=20)
        if cluster is not None and not args.keep:
            cluster.stop()
        elif not args.keep:
            for db in (base_db, subject_db):
                try:
                    psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)', admin)
                except Exception as exc:
                    print(f"could not drop {db}: {exc}", file=sys.stderr)
        if (failed or not completed) and not args.keep:
            shutil.rmtree(tmp / "pg", ignore_errors=True)
            print(f"logs kept in {tmp}")
        elif not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            running = f" (cluster running: pg_ctl -D {cluster.dir / 'data'} stop)" if cluster is not None else ""
            print(f"kept {tmp} and the databases{running}")
    print(f"\n{'FAILED: ' + '; '.join(failed) if failed else 'all checks passed'} ({time.time() - started:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
