"""Scripted password guessing against one account from one address, with Argon2 as in production.

Sends --attempts wrong passwords for a real username and the same for a username that does not
exist, interleaved attempt by attempt (each from its own address), and reports: how many succeeded (must be 0), the status codes (no 5xx; 429 from the lockout
on), and the median response time of each phase for both usernames, as a ratio. A ratio near 1.0
means the response time does not reveal whether the username exists. It also times one real
password step with Argon2 (the cost a person pays at each sign-in).

    .venv/bin/python -m bench.login_bruteforce [--attempts 10000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import Counter

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "healthcrypt.settings_test")

import django

django.setup()

from django.conf import settings
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import setup_test_environment
from django.urls import reverse

from accounts.models import User
from accounts.roles import Role

ARGON2 = ["django.contrib.auth.hashers.Argon2PasswordHasher"]
PASSWORD = "the right passphrase for the bench 1"


class Attack:
    """One attacker guessing one username's password: its statuses and response times, split at the lockout."""

    def __init__(self, username: str, address: str) -> None:
        self.username = username
        self.client = Client(REMOTE_ADDR=address)
        self.statuses: Counter[int] = Counter()
        self.before_lock: list[float] = []
        self.after_lock: list[float] = []
        self.successes = 0

    def guess(self, attempt: int) -> None:
        start = time.perf_counter()
        response = self.client.post(
            reverse("accounts:login"), {"username": self.username, "password": f"guess-{attempt}"}
        )
        elapsed = time.perf_counter() - start
        self.statuses[response.status_code] += 1
        (self.before_lock if response.status_code == 200 else self.after_lock).append(elapsed)
        if response.status_code == 302:
            self.successes += 1


def attack(attacks: list[Attack], attempts: int) -> None:
    """Interleaved: attempt n of every username, in an order rotated each attempt, so that drift (another
    process, CPU frequency) lands on both alike."""
    for attempt in range(attempts):
        shift = attempt % len(attacks)
        for one in attacks[shift:] + attacks[:shift]:
            one.guess(attempt)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--attempts", type=int, default=10_000)
    args = parser.parse_args()

    setup_test_environment()
    original_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0)
    try:
        run(args)
    finally:
        connection.creation.destroy_test_db(original_name, verbosity=0)


def run(args: argparse.Namespace) -> None:
    with override_settings(PASSWORD_HASHERS=ARGON2):
        user = User.objects.create_user("victim", password=PASSWORD, role=Role.PHYSICIAN)

        timings = []
        for _ in range(5):
            client = Client(REMOTE_ADDR="198.51.100.7")
            start = time.perf_counter()
            response = client.post(reverse("accounts:login"), {"username": user.username, "password": PASSWORD})
            timings.append(time.perf_counter() - start)
            assert response.status_code == 302
        print(f"one password step with Argon2 (right password): median {statistics.median(timings) * 1000:.1f} ms")

        known, unknown = Attack("victim", "203.0.113.9"), Attack("nobody-by-this-name", "203.0.113.10")
        attack([known, unknown], args.attempts)

    print(f"failure limit {settings.AXES_FAILURE_LIMIT}, {args.attempts} wrong passwords per username, interleaved")
    for label, one in (("existing", known), ("unknown", unknown)):
        print(
            f"{label:>8} username: successes {one.successes}, statuses {dict(sorted(one.statuses.items()))}, "
            f"median before lockout {statistics.median(one.before_lock) * 1000:.1f} ms, "
            f"after lockout {statistics.median(one.after_lock) * 1000:.2f} ms"
        )
    ratio_before = statistics.median(known.before_lock) / statistics.median(unknown.before_lock)
    ratio_after = statistics.median(known.after_lock) / statistics.median(unknown.after_lock)
    print(f"existing/unknown response-time ratio: before lockout {ratio_before:.2f}x, after lockout {ratio_after:.2f}x")
    if (
        known.successes
        or unknown.successes
        or any(code >= 500 for s in (known.statuses, unknown.statuses) for code in s)
    ):
        raise SystemExit("FAIL: a guess succeeded or the server erred")


if __name__ == "__main__":
    main()
