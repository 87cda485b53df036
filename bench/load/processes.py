"""The load test's processes: setup commands, gunicorn servers, a throwaway PostgreSQL cluster, the sealer."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
BIN = Path(PY).parent


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
