"""The one polling loop of the tests: ``wait_for`` a condition, failing with what was awaited and for how long."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["WaitTimeout", "eventually", "wait_for"]


class WaitTimeout(AssertionError):
    """A condition was still false when its time ran out; an assertion error, so the test fails, not errors."""


def wait_for(check: Callable[[], object], *, timeout_s: float, what: str | Callable[[], str],
             interval_s: float = 0.05) -> None:
    """Call ``check`` every ``interval_s`` until it returns something true, for at most ``timeout_s``.

    ``check`` is called once more after the time runs out, so a slow machine that got there at the last moment
    still passes. ``what`` names the awaited condition in the failure; a callable is asked only then, so it can
    report the state at that moment (a log tail, what did arrive). An exception from ``check`` goes through.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        late = time.monotonic() >= deadline
        if check():
            return
        if late:
            described = what() if callable(what) else what
            raise WaitTimeout(f"timed out after {timeout_s:g} s waiting for {described}")
        time.sleep(interval_s)


def eventually(check: Callable[[], object], timeout_s: float = 5.0, *, interval_s: float = 0.05) -> bool:
    """Whether ``check`` came true within ``timeout_s``: ``wait_for`` for a test that asserts on it itself."""
    try:
        wait_for(check, timeout_s=timeout_s, what="a condition", interval_s=interval_s)
    except WaitTimeout:
        return False
    return True
