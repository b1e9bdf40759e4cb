"""Per-codec circuit breakers and the JavaScript health counters the worker's statistics report.

A codec that keeps timing out, crashing its worker or running out of memory costs every other device its
time limit per uplink. After ``failures`` such failures within ``window_s`` its breaker opens: its uplinks
fail at once with "codec disabled ..." (and become dead letters) until ``cooldown_s`` has passed. Then one
uplink is let through as a trial: success closes the breaker, another failure opens it for a new cool-down.
Errors a codec reports itself (a short payload, a thrown exception) are ordinary results and do not count.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["BreakerPolicy", "CircuitBreaker", "CodecHealth", "HealthCounts"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failures: int = 5
    window_s: float = 60.0
    cooldown_s: float = 300.0


@dataclass(frozen=True, slots=True)
class HealthCounts:
    """Running totals since start; the statistics report the difference between two of them."""

    timeouts: int = 0
    crashes: int = 0
    out_of_memory: int = 0
    refused: int = 0  # uplinks failed at once because their codec was disabled
    disabled: int = 0  # codecs disabled right now (a level, not a total)

    @property
    def quiet(self) -> bool:
        """No timeout, crash, memory exhaustion or refusal counted (the level ``disabled`` aside)."""
        return not (self.timeouts or self.crashes or self.out_of_memory or self.refused)

    def since(self, earlier: HealthCounts) -> HealthCounts:
        return HealthCounts(
            self.timeouts - earlier.timeouts,
            self.crashes - earlier.crashes,
            self.out_of_memory - earlier.out_of_memory,
            self.refused - earlier.refused,
            self.disabled,
        )


class CodecHealth:
    """Counters shared by every JavaScript codec of a library, and their breakers; thread-safe."""

    def __init__(
        self,
        policy: BreakerPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.policy = policy or BreakerPolicy()
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._timeouts = self._crashes = self._out_of_memory = self._refused = 0
        self._breakers: list[CircuitBreaker] = []

    def breaker(self, codec_id: str) -> CircuitBreaker:
        breaker = CircuitBreaker(codec_id, self)
        with self._lock:
            self._breakers.append(breaker)
        return breaker

    def counts(self) -> HealthCounts:
        with self._lock:
            disabled = sum(1 for b in self._breakers if b.disabled)
            return HealthCounts(self._timeouts, self._crashes, self._out_of_memory, self._refused, disabled)

    def disabled(self) -> list[str]:
        """Ids of the codecs whose breaker is open or waiting for its trial."""
        with self._lock:
            return sorted(b.codec_id for b in self._breakers if b.disabled)

    def _count(self, kind: str) -> None:
        with self._lock:
            if kind == "timeout":
                self._timeouts += 1
            elif kind == "crash":
                self._crashes += 1
            elif kind == "memory":
                self._out_of_memory += 1
            elif kind == "refused":
                self._refused += 1


class CircuitBreaker:
    """One codec's breaker: closed, open until a time, or half-open with one trial in flight."""

    def __init__(self, codec_id: str, health: CodecHealth) -> None:
        self.codec_id = codec_id
        self._health = health
        self._policy = health.policy
        self._lock = threading.Lock()
        self._failures: deque[float] = deque()
        self._open_until: float | None = None
        self._retry_at: datetime | None = None
        self._trial = False
        self._opened_after = 0

    @property
    def disabled(self) -> bool:
        return self._open_until is not None

    def refusal(self) -> str | None:
        """None when a decode may run now; else the reason its uplink fails without running."""
        now = self._health._clock()
        with self._lock:
            if self._open_until is None:
                return None
            if now >= self._open_until and not self._trial:
                self._trial = True  # this caller runs the trial; others keep being refused until it ends
                return None
            retry_at = self._retry_at
        self._health._count("refused")
        when = retry_at.strftime("%Y-%m-%dT%H:%M:%SZ") if retry_at else "the end of the trial"
        return (f"codec disabled after {self._opened_after} failures in {self._policy.window_s:g} s; "
                f"retry at {when}")

    def succeeded(self) -> None:
        with self._lock:
            if self._open_until is None:
                return
            self._open_until = self._retry_at = None
            self._trial = False
            self._failures.clear()
        log.warning("JavaScript codec %s re-enabled: its trial decode after the cool-down succeeded", self.codec_id)

    def failed(self, kind: str) -> None:
        """Count a timeout, crash or memory exhaustion; opens the breaker at the threshold."""
        self._health._count(kind)
        policy = self._policy
        now = self._health._clock()
        with self._lock:
            if self._trial:
                count = self._opened_after
            else:
                self._failures.append(now)
                while self._failures and self._failures[0] <= now - policy.window_s:
                    self._failures.popleft()
                if len(self._failures) < policy.failures or self._open_until is not None:
                    return
                count = len(self._failures)
            self._trial = False
            self._opened_after = count
            self._open_until = now + policy.cooldown_s
            self._retry_at = self._health._wall().astimezone(UTC).replace(microsecond=0) + timedelta(
                seconds=policy.cooldown_s
            )
            retry_at = self._retry_at
        log.warning(
            "JavaScript codec %s disabled after %d failures (timeouts, crashes or memory exhaustion) in %g s; "
            "its uplinks go to dead letters until %s, then one trial decode",
            self.codec_id, count, policy.window_s, retry_at.isoformat(),
        )

