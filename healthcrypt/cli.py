"""Argument types for management commands: a bad number is refused with a clear message, never a traceback.

``parser.add_argument("--jobs", type=positive_int)`` makes ``--jobs 0`` or ``--jobs -2`` an error that
names the option's rule ("must be a whole number of at least 1"); from the command line argparse prints it
with the usage and exits 2, from ``call_command`` Django raises CommandError with the same text.
"""

from __future__ import annotations

import argparse
import math


def positive_int(raw: str) -> int:
    """A whole number of at least 1."""
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a whole number of at least 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be a whole number of at least 1")
    return value


def positive_seconds(raw: str) -> float:
    """A finite number of seconds, at least 0.01 (a loop with no pause would spin a core)."""
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number of seconds of at least 0.01") from None
    if not math.isfinite(value) or value < 0.01:
        raise argparse.ArgumentTypeError("must be a number of seconds of at least 0.01")
    return value
