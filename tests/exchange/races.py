"""Two writers at once on PostgreSQL, in a fixed order: the first writes and holds its transaction
open, the second runs until it waits on the first's locks, then the first commits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connection, connections, transaction


@dataclass
class Raced:
    first: Any
    second: Any
    # The queries the second writer was waiting in, on the first's locks (empty: it never waited).
    waiting: list[str]


def race(first: Callable[[], Any], second: Callable[[], Any], *, timeout: float = 30) -> Raced:
    """Run ``first`` in a thread, inside a transaction kept open once it returned; then ``second`` in
    another thread; poll ``pg_stat_activity`` until ``second`` waits on a lock (or ``timeout``), then
    let ``first`` commit and wait for both. Each thread has its own connection; an exception raised
    in either is raised here, after both ended."""
    written, release = threading.Event(), threading.Event()
    results: dict[str, Any] = {}

    def run_first() -> None:
        try:
            with transaction.atomic():
                results["first"] = first()
                written.set()
                release.wait(timeout)
        except BaseException as error:  # raised in the test's thread below
            results["first_error"] = error
            written.set()
        finally:
            connections.close_all()

    def run_second() -> None:
        try:
            results["second"] = second()
        except BaseException as error:
            results["second_error"] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run_first), threading.Thread(target=run_second)]
    threads[0].start()
    written.wait(timeout)
    if "first_error" not in results:
        threads[1].start()
    waiting: list[str] = []
    try:
        deadline = time.monotonic() + timeout
        with connection.cursor() as cursor:
            while threads[1].is_alive() and time.monotonic() < deadline and not waiting:
                cursor.execute("SELECT query FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
                waiting = [query for (query,) in cursor.fetchall()]
                time.sleep(0.05)
    finally:
        release.set()
        for thread in threads:
            if thread.ident is not None:
                thread.join(2 * timeout)
    for key in ("first_error", "second_error"):
        if key in results:
            raise results[key]
    return Raced(results["first"], results["second"], waiting)
