"""Management commands refuse a bad number with a clear message (CommandError), never a traceback or a busy loop."""

from __future__ import annotations

import argparse

import pytest
from django.core.management import CommandError, call_command

from healthcrypt.cli import positive_int, positive_seconds


@pytest.mark.parametrize("raw", ["0", "-2", "two", "1.5", ""])
def test_positive_int_refuses_zero_negatives_and_non_numbers(raw: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="whole number of at least 1"):
        positive_int(raw)


@pytest.mark.parametrize("raw", ["0", "-1", "0.001", "nan", "inf", "soon"])
def test_positive_seconds_refuses_a_spinning_loop_and_non_numbers(raw: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"seconds of at least 0\.01"):
        positive_seconds(raw)


def test_positive_types_accept_sensible_values() -> None:
    assert positive_int("4") == 4
    assert positive_seconds("0.5") == 0.5


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("seal_audit", ["--loop", "--interval", "-1"], "--interval: must be a number of seconds"),
        ("seal_audit", ["--loop", "--interval", "0"], "--interval: must be a number of seconds"),
        ("verify_audit", ["--jobs", "0"], "--jobs: must be a whole number of at least 1"),
        ("verify_audit", ["--jobs", "-3"], "--jobs: must be a whole number of at least 1"),
        ("backfill_rule_indexes", ["--batch-size", "0"], "--batch-size: must be a whole number"),
    ],
)
def test_commands_refuse_bad_numbers_before_doing_anything(command: str, args: list[str], message: str) -> None:
    # No database access is allowed in this test: the refusal comes from argument parsing, before any work.
    with pytest.raises(CommandError, match=message):
        call_command(command, *args)
