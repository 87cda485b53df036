"""The load test (bench/load/) runs end to end for a few seconds, so it cannot rot unnoticed.

Two signed-in users against gunicorn on a throwaway PostgreSQL cluster of its own, the baseline and
the subject one round each: every check of the real run (no failed request, every chart response
recorded, the sealer caught up with sealing and with judging the accesses, verify_audit) must pass. Skipped where PostgreSQL's server binaries
are not installed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _postgres_server_installed() -> bool:
    return bool(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb")) or shutil.which("initdb"))


@pytest.mark.load
@pytest.mark.skipif(not _postgres_server_installed(), reason="needs PostgreSQL's server binaries (initdb)")
def test_load_test_runs_and_every_chart_response_is_recorded() -> None:
    gunicorn_port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_"))}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.load.run",
            "--users",
            "2",
            "--duration",
            "3",
            "--rounds",
            "1",
            "--patients",
            "3",
            "--quick",
            "--workers",
            "1",
            "--no-scaling",
            "--sign-in-seconds",
            "1",
            "--port",
            str(gunicorn_port),
            "--pg-port",
            str(_free_port()),
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "all checks passed" in result.stdout
    assert "chart views answered 200 (subject)" in result.stdout
    assert "verify_audit: exit 0" in result.stdout
    # The subject runs with the anomaly rules at the sealer (production's mode on PostgreSQL): it caught up.
    assert "every access judged by the sealer" in result.stdout
