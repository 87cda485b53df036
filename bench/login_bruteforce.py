"""Scripted password guessing against one account from one address, with Argon2 as in production.

Sends --attempts wrong passwords for a real username and the same for a username that does not
exist, and reports: how many succeeded (must be 0), the status codes (no 5xx; 429 from the lockout
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


def attack(username: str, attempts: int) -> tuple[Counter[int], list[float], list[float], int]:
    client = Client(REMOTE_ADDR="203.0.113.9")
    url = reverse("accounts:login")
    statuses: Counter[int] = Counter()
    before_lock: list[float] = []
    after_lock: list[float] = []
    successes = 0
    for attempt in range(attempts):
        start = time.perf_counter()
        response = client.post(url, {"username": username, "password": f"guess-{attempt}"})
        elapsed = time.perf_counter() - start
        statuses[response.status_code] += 1
        (before_lock if response.status_code == 200 else after_lock).append(elapsed)
        if response.status_code == 302:
            successes += 1
    return statuses, before_lock, after_lock, successes


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

        known = attack("victim", args.attempts)
        unknown = attack("nobody-by-this-name", args.attempts)

    print(f"failure limit {settings.AXES_FAILURE_LIMIT}, {args.attempts} wrong passwords per username, one address")
    for label, (statuses, before, after, successes) in (("existing", known), ("unknown", unknown)):
        print(
            f"{label:>8} username: successes {successes}, statuses {dict(sorted(statuses.items()))}, "
            f"median before lockout {statistics.median(before) * 1000:.1f} ms, "
            f"after lockout {statistics.median(after) * 1000:.2f} ms"
        )
    ratio_before = statistics.median(known[1]) / statistics.median(unknown[1])
    ratio_after = statistics.median(known[2]) / statistics.median(unknown[2])
    print(f"existing/unknown response-time ratio: before lockout {ratio_before:.2f}x, after lockout {ratio_after:.2f}x")
    if known[3] or unknown[3] or any(code >= 500 for s in (known[0], unknown[0]) for code in s):
        raise SystemExit("FAIL: a guess succeeded or the server erred")


if __name__ == "__main__":
    main()
