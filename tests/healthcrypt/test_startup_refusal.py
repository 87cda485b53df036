"""Production mode refuses to start without its secrets; a correct production set passes --deploy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from healthcrypt.crypto import generate_key
from healthcrypt.env import SECRET_GENERATORS

ROOT = Path(__file__).resolve().parents[2]
SECRET_NAMES = (
    "SECRET_KEY",
    "FIELD_ENCRYPTION_KEYS",
    "BLIND_INDEX_KEY",
    "AUDIT_HMAC_KEY",
    "AUDIT_MARKER_KEY",
    "RESEARCH_PSEUDONYM_KEY",
)


def production_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    # Only the basics of the parent's environment: the test settings put test values in os.environ.
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "VIRTUAL_ENV", "TMPDIR")}
    env.update(
        DJANGO_SETTINGS_MODULE="healthcrypt.settings",
        DEBUG="0",
        ALLOWED_HOSTS="ehr.hospital.example",
        SITE_URL="https://ehr.hospital.example",  # as in .env.example: alert emails link here (W014)
        FHIR_BASE_URL="https://ehr.hospital.example/fhir/r4",  # as in .env.example (exchange.W001)
        REDIS_URL="redis://127.0.0.1:6379/0",  # as in .env.example (exchange.W003); not connected by a check
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        HEALTHCRYPT_DEV_SECRETS_FILE=str(tmp_path / "dev.env"),
    )
    env.update(overrides)
    return env


def full_secrets() -> dict[str, str]:
    return {
        "SECRET_KEY": "s" + generate_key() + generate_key(),
        "FIELD_ENCRYPTION_KEYS": f"k1:{generate_key()}",
        "BLIND_INDEX_KEY": generate_key(),
        "AUDIT_HMAC_KEY": generate_key(),
        "AUDIT_MARKER_KEY": generate_key(),
        "RESEARCH_PSEUDONYM_KEY": generate_key(),
        # The hospital's JOSE keys (exchange/keys.py): production refuses to start without them.
        "HOSPITAL_JWKS": SECRET_GENERATORS["HOSPITAL_JWKS"](),
    }


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_production_without_secret_key_refuses_to_start_and_names_it(tmp_path: Path) -> None:
    secrets = full_secrets()
    del secrets["SECRET_KEY"]
    result = run([sys.executable, "manage.py", "check"], production_env(tmp_path, **secrets))
    assert result.returncode != 0
    assert "healthcrypt.E001" in result.stderr
    assert "SECRET_KEY is not set" in result.stderr
    # No throwaway secrets are ever generated outside DEBUG.
    assert not (tmp_path / "dev.env").exists()


def test_production_without_any_secret_names_every_missing_variable(tmp_path: Path) -> None:
    result = run([sys.executable, "manage.py", "check"], production_env(tmp_path))
    assert result.returncode != 0
    for name in SECRET_NAMES:
        assert f"{name} is not set" in result.stderr


def test_wsgi_entry_point_refuses_to_start_without_secrets(tmp_path: Path) -> None:
    # gunicorn never runs manage.py's checks, so the WSGI module must refuse by itself.
    result = run([sys.executable, "-c", "import healthcrypt.wsgi"], production_env(tmp_path))
    assert result.returncode != 0
    assert "Healthcrypt refuses to start" in result.stderr
    assert "SECRET_KEY is not set" in result.stderr


def test_wsgi_entry_point_starts_with_a_complete_production_configuration(tmp_path: Path) -> None:
    result = run([sys.executable, "-c", "import healthcrypt.wsgi"], production_env(tmp_path, **full_secrets()))
    assert result.returncode == 0, result.stderr


def test_check_deploy_reports_no_issue_with_production_settings(tmp_path: Path) -> None:
    result = run([sys.executable, "manage.py", "check", "--deploy"], production_env(tmp_path, **full_secrets()))
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNINGS" not in result.stderr


def test_secret_from_file_variant_is_accepted(tmp_path: Path) -> None:
    secrets = full_secrets()
    key_file = tmp_path / "secret_key"
    key_file.write_text(secrets.pop("SECRET_KEY"))
    env = production_env(tmp_path, **secrets, SECRET_KEY_FILE=str(key_file))
    result = run([sys.executable, "manage.py", "check", "--deploy"], env)
    assert result.returncode == 0, result.stderr


def test_demo_mode_generates_throwaway_secrets_once(tmp_path: Path) -> None:
    env = production_env(tmp_path, DEBUG="1", ALLOWED_HOSTS="127.0.0.1")
    first = run([sys.executable, "manage.py", "check"], env)
    assert first.returncode == 0, first.stderr
    generated = (tmp_path / "dev.env").read_text()
    for name in SECRET_NAMES:
        assert f"{name}=" in generated
    second = run([sys.executable, "manage.py", "check"], env)
    assert second.returncode == 0
    assert (tmp_path / "dev.env").read_text() == generated


@pytest.mark.parametrize("value", ["not-base64!", "c2hvcnQ"])
def test_malformed_key_refuses_to_start(tmp_path: Path, value: str) -> None:
    secrets = full_secrets()
    secrets["BLIND_INDEX_KEY"] = value
    result = run([sys.executable, "manage.py", "check"], production_env(tmp_path, **secrets))
    assert result.returncode != 0
    assert "healthcrypt.E002" in result.stderr
    assert value not in result.stderr  # the message names the variable, never the key
