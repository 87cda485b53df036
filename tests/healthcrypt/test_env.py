from __future__ import annotations

import stat
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from healthcrypt.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_secret,
    load_dev_secrets,
    read_env_file,
)


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("true", True), ("ON", True), ("0", False), ("no", False)])
def test_env_bool_accepts_clear_yes_and_no(raw: str, expected: bool) -> None:
    assert env_bool("DEBUG", not expected, environ={"DEBUG": raw}) is expected


def test_env_bool_refuses_an_unclear_value_and_names_the_variable() -> None:
    with pytest.raises(ImproperlyConfigured, match="DEBUG must be one of"):
        env_bool("DEBUG", False, environ={"DEBUG": "maybe"})


def test_env_bool_defaults_when_unset() -> None:
    assert env_bool("DEBUG", False, environ={}) is False


def test_env_int_refuses_non_numbers() -> None:
    assert env_int("N", 5, environ={"N": " 12 "}) == 12
    assert env_int("N", 5, environ={}) == 5
    with pytest.raises(ImproperlyConfigured, match="N must be a whole number"):
        env_int("N", 5, environ={"N": "twelve"})


def test_env_int_refuses_a_value_below_its_minimum() -> None:
    assert env_int("AUDIT_SEAL_MAX_DELAY", 10, minimum=1, environ={"AUDIT_SEAL_MAX_DELAY": "1"}) == 1
    with pytest.raises(ImproperlyConfigured, match="AUDIT_SEAL_MAX_DELAY must be at least 1"):
        env_int("AUDIT_SEAL_MAX_DELAY", 10, minimum=1, environ={"AUDIT_SEAL_MAX_DELAY": "-5"})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("soon", "must be a number"),
        ("nan", "must be a finite number"),
        ("inf", "must be a finite number"),
        ("-1", "must be at least 0.01"),
        ("0", "must be at least 0.01"),
    ],
)
def test_env_float_refuses_non_numbers_non_finite_and_values_below_the_minimum(raw: str, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=f"AUDIT_SEAL_INTERVAL {message}"):
        env_float("AUDIT_SEAL_INTERVAL", 0.5, minimum=0.01, environ={"AUDIT_SEAL_INTERVAL": raw})


def test_env_float_reads_a_number_or_defaults() -> None:
    assert env_float("AUDIT_SEAL_INTERVAL", 0.5, minimum=0.01, environ={"AUDIT_SEAL_INTERVAL": " 0.25 "}) == 0.25
    assert env_float("AUDIT_SEAL_INTERVAL", 0.5, environ={}) == 0.5


def test_env_list_splits_on_commas_and_drops_blanks() -> None:
    assert env_list("HOSTS", ["x"], environ={"HOSTS": "a.example, b.example,,"}) == ["a.example", "b.example"]
    assert env_list("HOSTS", ["x"], environ={}) == ["x"]


def test_env_secret_reads_the_variable_or_the_named_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "key"
    secret_file.write_text("from-file\n")
    assert env_secret("KEY", environ={"KEY": "direct"}) == "direct"
    assert env_secret("KEY", environ={"KEY_FILE": str(secret_file)}) == "from-file"
    assert env_secret("KEY", environ={}) is None
    assert env_secret("KEY", environ={"KEY": ""}) is None


def test_env_secret_refuses_two_sources(tmp_path: Path) -> None:
    with pytest.raises(ImproperlyConfigured, match="either KEY or KEY_FILE"):
        env_secret("KEY", environ={"KEY": "a", "KEY_FILE": str(tmp_path / "k")})


def test_env_secret_unreadable_file_names_the_variable_not_the_path_contents(tmp_path: Path) -> None:
    with pytest.raises(ImproperlyConfigured, match="KEY_FILE names a file that cannot be read"):
        env_secret("KEY", environ={"KEY_FILE": str(tmp_path / "missing")})


def test_dev_secrets_are_generated_once_private_and_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "dev.env"
    first = load_dev_secrets(path, ["SECRET_KEY", "BLIND_INDEX_KEY"])
    assert first["SECRET_KEY"]
    assert first["BLIND_INDEX_KEY"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_dev_secrets(path, ["SECRET_KEY", "BLIND_INDEX_KEY"])
    assert again == first
    # A secret asked for later is added without replacing the existing ones.
    more = load_dev_secrets(path, ["AUDIT_HMAC_KEY"])
    assert more["SECRET_KEY"] == first["SECRET_KEY"]
    assert read_env_file(path)["AUDIT_HMAC_KEY"] == more["AUDIT_HMAC_KEY"]


def test_env_choice_accepts_one_of_its_choices_and_refuses_anything_else() -> None:
    choices = ("request", "sealer")
    assert env_choice("ANOMALY_RULES_AT", "sealer", choices, environ={}) == "sealer"
    assert env_choice("ANOMALY_RULES_AT", "sealer", choices, environ={"ANOMALY_RULES_AT": " Request "}) == "request"
    assert env_choice("ANOMALY_RULES_AT", "request", choices, environ={"ANOMALY_RULES_AT": ""}) == "request"
    with pytest.raises(ImproperlyConfigured, match="ANOMALY_RULES_AT must be one of request, sealer"):
        env_choice("ANOMALY_RULES_AT", "sealer", choices, environ={"ANOMALY_RULES_AT": "nowhere"})
