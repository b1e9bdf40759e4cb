"""Each API key's share of the busy routes: a token bucket of open-data requests, and caps on the exports streaming
and the device imports running at once.

Both live in this process's memory: with several API processes behind a balancer, each enforces the limits on
its own, so a key's effective rate is the configured one times the number of processes.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

__all__ = ["ExportSlots", "Slots", "TokenBuckets"]


class TokenBuckets:
    """A bucket of ``burst`` tokens per key, refilled at ``per_minute``; every request takes one."""

    _PRUNE_AT = 10_000

    def __init__(self, per_minute: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.burst = burst
        self._rate = per_minute / 60.0
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when counted)

    def take(self, key: str) -> float | None:
        """Take a token for ``key``: None when there was one, otherwise the seconds until there is."""
        with self._lock:
            now = self._clock()
            tokens, then = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self._rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                if len(self._buckets) > self._PRUNE_AT:
                    self._prune(now)
                return None
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self._rate

    def _prune(self, now: float) -> None:
        # A full bucket is the same as no bucket; forgetting them keeps memory bounded by the keys in use.
        full = [k for k, (tokens, then) in self._buckets.items()
                if tokens + (now - then) * self._rate >= self.burst]
        for k in full:
            del self._buckets[k]

    @staticmethod
    def retry_after(wait_s: float) -> int:
        """Whole seconds for a ``Retry-After`` header: never early, never zero."""
        return max(1, math.ceil(wait_s))


class Slots:
    """At most ``total`` long requests (exports, imports: ``what``) at once, and at most ``per_key`` for one key."""

    def __init__(self, total: int, per_key: int, *, what: str = "export",
                 verbs: tuple[str, str] = ("streams", "streaming")) -> None:
        self.total = total
        self.per_key = per_key
        self.what = what
        self.verbs = verbs
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}

    def acquire(self, key: str) -> str | None:
        """Take a slot for ``key``: None when taken, otherwise why not."""
        with self._lock:
            mine = self._running.get(key, 0)
            if mine >= self.per_key:
                return (f"this key {self.verbs[0]} {mine} {self.what}{'s' if mine > 1 else ''} already "
                        f"(at most {self.per_key})")
            if sum(self._running.values()) >= self.total:
                return f"{self.total} {self.what}s are {self.verbs[1]} on this server already"
            self._running[key] = mine + 1
            return None

    def release(self, key: str) -> None:
        with self._lock:
            left = self._running.get(key, 0) - 1
            if left > 0:
                self._running[key] = left
            else:
                self._running.pop(key, None)

    @property
    def running(self) -> int:
        with self._lock:
            return sum(self._running.values())


ExportSlots = Slots
"""The open-data exports' slots (the name the open-data routes and their tests use)."""
