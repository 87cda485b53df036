from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine

from accounts.signals import auth_event

START = datetime.datetime(2026, 11, 21, 9, 0, 7, tzinfo=datetime.UTC)


@pytest.fixture
def clock() -> Iterator[time_machine.Coordinates]:
    """Frozen time at START; ``clock.shift(timedelta)`` moves it."""
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    """Every ``auth_event`` sent during the test, as its keyword arguments."""
    seen: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        seen.append(kwargs)

    auth_event.connect(receiver, dispatch_uid="tests.accounts.events")
    yield seen
    auth_event.disconnect(dispatch_uid="tests.accounts.events")
