"""One way for a test to wait for something another process or thread does."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    what: str,
    *,
    timeout: float = 30.0,
    every: float = 0.1,
    alive: Callable[[], str | None] | None = None,
    explain: Callable[[], str] | None = None,
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    The timeout only guards against a hang. ``alive`` is asked between polls and returns why
    waiting is pointless (a process that exited) or None; ``explain`` adds context (a log
    tail) to the failure.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        gone = alive() if alive is not None else None
        if gone is not None:
            raise AssertionError(f"{gone} while waiting for {what}" + (f":\n{explain()}" if explain else ""))
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f":\n{explain()}" if explain else ""))
        time.sleep(every)
