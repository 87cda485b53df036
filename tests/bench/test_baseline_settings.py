"""The load test's plaintext baseline (no policy, no audit) cannot be switched on in production.

bench/load/settings_baseline.py turns it on in Python, for a bench database only; the production
settings refuse the switch from the environment and never name the bench app or URLconf.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import resolve

ROOT = Path(__file__).resolve().parents[2]
KEYS = {
    "SECRET_KEY": "test-secret-key-not-for-production-" + "x" * 30,
    "FIELD_ENCRYPTION_KEYS": "test1:" + "A" * 43,
    "BLIND_INDEX_KEY": "B" * 43,
    "AUDIT_HMAC_KEY": "C" * 43,
    "AUDIT_MARKER_KEY": "D" * 43,
    "RESEARCH_PSEUDONYM_KEY": "F" * 43,
}
PRINT_SETTINGS = (
    "import django; django.setup(); from django.conf import settings; "
    "print(settings.BENCH_BASELINE, settings.ROOT_URLCONF, 'bench.load.baseline.apps.BaselineConfig' in settings.INSTALLED_APPS)"
)


def load_settings(module: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Import ``module`` as the settings of a fresh interpreter with the test keys and ``env``."""
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "BENCH_", "HEALTHCRYPT_"))
    }
    clean.update(KEYS, DEBUG="0", DJANGO_SETTINGS_MODULE=module, **env)
    return subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS], env=clean, cwd=ROOT, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("switch", ["BENCH_BASELINE", "HEALTHCRYPT_BENCH_BASELINE"])
def test_production_settings_refuse_the_baseline_switch_from_the_environment(switch: str) -> None:
    result = load_settings("healthcrypt.settings", **{switch: "1"})

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "cannot be enabled through the environment" in result.stderr


def test_production_settings_do_not_install_the_baseline() -> None:
    result = load_settings("healthcrypt.settings")

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "healthcrypt.urls", "False"]


def test_the_running_settings_serve_the_real_chart_not_the_baseline() -> None:
    assert settings.BENCH_BASELINE is False
    assert not any(app.startswith("bench") for app in settings.INSTALLED_APPS)
    assert resolve("/patients/1/").func.__module__.startswith("records.")
    assert resolve("/patients/search/").func.__module__.startswith("records.")


@pytest.mark.parametrize(
    "database_url",
    [
        "postgres://postgres@127.0.0.1:5432/healthcrypt",
        "sqlite:///db.sqlite3",
        "postgres://postgres@127.0.0.1:5432/test_healthcrypt",
    ],
)
def test_baseline_settings_refuse_a_database_that_is_not_a_bench_one(database_url: str) -> None:
    result = load_settings("bench.load.settings_baseline", DATABASE_URL=database_url)

    assert result.returncode != 0
    assert "only on a bench database" in result.stderr


def test_baseline_settings_switch_the_baseline_on_for_a_bench_database() -> None:
    result = load_settings(
        "bench.load.settings_baseline", DATABASE_URL="postgres://postgres@127.0.0.1:5432/hc_load_base"
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "bench.load.baseline.urls", "True"]
