"""Load test: signed-in staff of several roles against gunicorn, with a plaintext baseline in the same run.

    .venv/bin/python -m bench.load.run --users 16 --duration 60 [--workers 4] [--rounds 2] [--patients 250]

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
   machine lands on both sides.
4. Prints requests/s, p50/p95/p99 per page kind and overall, errors; the ratios subject/baseline and
   4 workers/1 worker; then checks that every successful chart response has its access events
   (and nothing more), waits for the sealer (bounded) and runs ``verify_audit``. Exits non-zero if a
   check fails.

Throughput and latency are measured once every user has signed in (sign-in and step-up are
excluded from the figures, but sign-ins are real: Argon2, TOTP, lockout accounting).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
BIN = Path(PY).parent
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


# --- processes -------------------------------------------------------------------------------------


def run(cmd: list[str], env: dict[str, str], *, quiet: bool = True) -> str:
    began = time.time()
    result = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise SystemExit(f"failed: {' '.join(cmd[:4])} (exit {result.returncode})")
    if not quiet:
        print(result.stdout.strip())
    if os.environ.get("LOAD_VERBOSE"):
        print(f"  ({time.time() - began:.1f} s: {' '.join(cmd[1:4])})", flush=True)
    return result.stdout


def psql(sql: str, url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@dataclass
class Server:
    name: str
    port: int
    workers: int
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        cmd = [
            str(BIN / "gunicorn"),
            "healthcrypt.wsgi:application",
            "--workers",
            str(self.workers),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--chdir",
            str(ROOT),
            "--log-level",
            "warning",
        ]
        self.process = subprocess.Popen(
            cmd, env=self.env, cwd=ROOT, stdout=self.log.open("wb"), stderr=subprocess.STDOUT
        )

    def wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} server exited: see {self.log}")
            try:
                probe = urllib.request.Request(f"{self.url}/accounts/login/", headers={"X-Forwarded-Proto": "https"})  # noqa: S310
                with urllib.request.urlopen(probe, timeout=2) as answer:  # noqa: S310
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise SystemExit(f"{self.name} server did not answer within 60 s: see {self.log}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


class PrivateCluster:
    """A throwaway PostgreSQL cluster (initdb in the temporary directory, its own port).

    The application refuses to start (healthcrypt.E012) on a cluster where the test runner's
    maintenance role exists, as it does on a developer's cluster where the suite runs; a cluster of
    its own is also what production has, and keeps other work on the shared one out of the figures.
    """

    def __init__(self, tmp: Path, port: int) -> None:
        self.dir, self.port = tmp / "pg", port
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        self.bin = found[-1].parent if found else Path(shutil.which("initdb") or "initdb").parent
        # initdb and postgres refuse to run as root: as root, run them as the postgres user.
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}"

    def start(self) -> None:
        self.dir.mkdir()
        if self.prefix:
            shutil.chown(self.dir, "postgres")
            os.chmod(self.dir.parent, 0o755)  # noqa: S103 - the postgres user must reach its directory
        data = str(self.dir / "data")
        subprocess.run(
            [
                *self.prefix,
                str(self.bin / "initdb"),
                "-D",
                data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200"
        subprocess.run(
            [
                *self.prefix,
                str(self.bin / "pg_ctl"),
                "-D",
                data,
                "-o",
                options,
                "-l",
                str(self.dir / "log"),
                "-w",
                "start",
            ],
            check=True,
            capture_output=True,
        )

    def durable(self, on: bool) -> None:
        """fsync off while setting up (nothing measured), on again (the server default) before the load."""
        psql("ALTER SYSTEM RESET fsync" if on else "ALTER SYSTEM SET fsync = off", f"{self.url}/postgres")
        psql("SELECT pg_reload_conf()", f"{self.url}/postgres")
        if on:
            psql("CHECKPOINT", f"{self.url}/postgres")

    def stop(self) -> None:
        data = str(self.dir / "data")
        subprocess.run(
            [*self.prefix, str(self.bin / "pg_ctl"), "-D", data, "-m", "fast", "-w", "stop"],
            check=False,
            capture_output=True,
        )


def start_sealer(env: dict[str, str], log: Path, interval: float) -> subprocess.Popen[bytes]:
    """``seal_audit --loop`` beside the servers; where the command has no --loop yet, the same command
    called in a loop in one process (a shell loop would start Django, a second of CPU, twice a second)."""
    # Read, not run: `seal_audit --help` would cost a Django start-up.
    command = (ROOT / "audit/management/commands/seal_audit.py").read_text(encoding="utf-8")
    if '"--loop"' in command:
        cmd = [PY, "manage.py", "seal_audit", "--loop", "--interval", str(interval)]
    else:
        loop = (
            "import io, time, django; django.setup()\n"
            "from django.core.management import call_command\n"
            f"while True:\n    call_command('seal_audit', stdout=io.StringIO())\n    time.sleep({interval})\n"
        )
        cmd = [PY, "-c", loop]
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)


# --- one round of locust ----------------------------------------------------------------------------


@dataclass
class Round:
    case: str
    records: list[tuple[str, float, float, bool]]
    window: float
    signed_in: int
    chart_ok: int
    failures: dict[str, int]


def locust_round(
    case: str, server: Server, *, users: int, seconds: int, tmp: Path, plan: Path, tag: str, steps: Path
) -> Round:
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
        f"{seconds}s",
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


# --- figures ----------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] * 1000


@dataclass
class Case:
    name: str
    rounds: list[Round] = field(default_factory=list)

    def rates(self) -> list[float]:
        return [len(r.records) / r.window for r in self.rounds]

    def durations(self, kind: str | None = None) -> list[float]:
        return [rec[2] for r in self.rounds for rec in r.records if (kind is None or rec[0] == kind) and rec[3]]

    def errors(self, kind: str | None = None) -> int:
        return sum(1 for r in self.rounds for rec in r.records if (kind is None or rec[0] == kind) and not rec[3])

    def count(self, kind: str) -> int:
        return sum(1 for r in self.rounds for rec in r.records if rec[0] == kind)

    def kinds(self) -> list[str]:
        return sorted({rec[0] for r in self.rounds for rec in r.records})


def print_case(case: Case) -> None:
    rates = case.rates()
    window = sum(r.window for r in case.rounds)
    print(
        f"\n{case.name}: {statistics.median(rates):.1f} requests/s (median of {len(rates)} rounds; "
        f"min {min(rates):.1f}, max {max(rates):.1f}), users signed in per round: "
        f"{', '.join(str(r.signed_in) for r in case.rounds)}"
    )
    print(f"  {'kind':<14} {'requests':>8} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for kind in [*case.kinds(), None]:
        d = case.durations(kind)
        n = case.count(kind) if kind else sum(len(r.records) for r in case.rounds)
        print(
            f"  {kind or 'all':<14} {n:>8} {n / window:>7.1f} {pct(d, 50):>8.0f} {pct(d, 95):>8.0f} "
            f"{pct(d, 99):>8.0f} {case.errors(kind):>6}"
        )
    failures: dict[str, int] = {}
    for r in case.rounds:
        for reason, count in r.failures.items():
            failures[reason] = failures.get(reason, 0) + count
    for reason, count in sorted(failures.items()):
        print(f"  failed: {count} x {reason}")


def paired(subject: Case, baseline: Case) -> float:
    return statistics.median(s / b for s, b in zip(subject.rates(), baseline.rates(), strict=False))


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
    parser.add_argument("--no-scaling", action="store_true", help="skip the 1-worker server (and its ratio)")
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
    args = parser.parse_args(argv)
    if args.users < 1 or args.rounds < 1 or args.duration < args.rounds:
        parser.error("need at least one user, one round and one second per round")

    tmp = Path(tempfile.mkdtemp(prefix="hc-load-"))
    cluster = PrivateCluster(tmp, args.pg_port) if args.pg == "private" else None
    pg = cluster.url if cluster is not None else args.pg
    subject_db, base_db = f"{args.db_prefix}_subject", f"{args.db_prefix}_base"
    admin = f"{pg}/postgres"
    subject_env = environment(tmp, f"{pg}/{subject_db}", "healthcrypt.settings")
    base_env = environment(tmp, f"{pg}/{base_db}", "bench.load.settings_baseline")
    servers: list[Server] = []
    sealer: subprocess.Popen[bytes] | None = None
    failed: list[str] = []
    started = time.time()
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
        cases = {s.name: Case(s.name) for s in servers}
        steps = {s.name: tmp / ("steps-base" if s.name == "baseline" else "steps-subject") for s in servers}
        for path in steps.values():
            path.mkdir(exist_ok=True)
        names = [s.name for s in servers]
        by_name = {s.name: s for s in servers}
        for index in range(args.rounds):
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                print(f"round {index + 1}/{args.rounds}: {name} ({seconds} s, {args.users} users)", flush=True)
                cases[name].rounds.append(
                    locust_round(
                        name,
                        by_name[name],
                        users=args.users,
                        seconds=seconds,
                        tmp=tmp,
                        plan=plan,
                        tag=tag,
                        steps=steps[name],
                    )
                )
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
            print(
                f"  {kind:<14} p50 {pct(subject.durations(kind), 50):5.0f} / {pct(base.durations(kind), 50):5.0f} ms  "
                f"p95 {pct(subject.durations(kind), 95):5.0f} / {pct(base.durations(kind), 95):5.0f} ms  "
                f"p99 {pct(subject.durations(kind), 99):5.0f} / {pct(base.durations(kind), 99):5.0f} ms"
            )
        print(
            f"  all            p50 {pct(subject.durations(), 50):5.0f} / {pct(base.durations(), 50):5.0f} ms  "
            f"p95 {pct(subject.durations(), 95):5.0f} / {pct(base.durations(), 95):5.0f} ms  "
            f"p99 {pct(subject.durations(), 99):5.0f} / {pct(base.durations(), 99):5.0f} ms  (target p99 < 250 ms)"
        )
        if "subject-1w" in cases:
            print(
                f"  {args.workers} workers / 1 worker (subject): {paired(subject, cases['subject-1w']):.2f}x  (target >= 1.7x)"
            )
        # Sign-in requests count too: a refused sign-in or a 503 behind it is a failure of the run.
        errors = sum(sum(r.failures.values()) for c in cases.values() for r in c.rounds)
        if errors:
            failed.append(f"{errors} failed requests")

        # Every successful chart response must have its access events, and no chart view any other.
        chart_ok = sum(r.chart_ok for name in cases if name != "baseline" for r in cases[name].rounds)
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
        if failed and not args.keep:
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
