"""The evaluator in real time: a round soon after the ingest commits readings, and on a timer for silence.

``Runner.run`` is the loop of ``ioc operations run``. It listens on ``ioc_readings`` (the ingest notifies it on
every commit that stored measurements) and runs a round soon after a notification, at most one per
``min_gap_s`` and no more than ``busy_share`` of the time, so a burst of commits costs one round and a
draining backlog a bounded share of the database; every ``interval_s`` it runs one anyway, because a station
that falls silent sends nothing, and a lost notification costs latency, never a status.

Any number of runners may be started: one is active, the others stand by. The active one holds a session
advisory lock (``ACTIVE_KEY``) on its connection; a standby tries to take it every ``retry_s``, so when the
active process dies (its session ends, the lock with it) another takes over within about that. Rounds are
still serialised by the evaluator's own transaction lock, which also keeps ``ioc operations evaluate`` from
interleaving. A runner's first round, and its first after a reconnect, catches up on whatever it missed,
since a round reads the stored readings, not the notifications.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from gateways.database import Connection, DatabaseUnavailable, close_quietly, database_errors
from gateways.wakeups import READINGS, Listener

__all__ = ["ACTIVE_KEY", "Counts", "Pace", "Runner"]

log = logging.getLogger("ioc.operations")

ACTIVE_KEY = 0x10C_0014
"""Session advisory lock held by the active runner (the evaluator's round lock is 0x10C0013)."""

R = TypeVar("R")

_TICK_S = 0.5  # longest wait between looks at the stop event


@dataclass(frozen=True, slots=True)
class Pace:
    """How often rounds run."""

    interval_s: float = 5.0
    """A round at least this often, notified or not (silent stations become ``unknown``)."""
    min_gap_s: float = 0.25
    """At most one round per this many seconds, however many notifications arrive."""
    busy_share: float = 0.15
    """Woken rounds take at most this share of the time: after a round of d seconds the next woken one waits
    at least d / busy_share from its start. Under a steady stream of commits (a backlog draining) the rounds
    then cost the database a bounded share, whatever a round costs; the fallback round is not held back."""
    retry_s: float = 1.0
    """Wait after a database failure before reconnecting; how often a standby tries to become active."""


@dataclass(slots=True)
class Counts:
    """What a runner did, for tests, benchmarks and logs."""

    rounds: int = 0
    """Rounds this runner ran (not those it found the round lock taken for)."""
    notifications: int = 0
    failures: int = 0
    """Database failures it recovered from (reconnected after)."""
    activations: int = 0
    """Times it became the active runner."""
    busy_s: float = 0.0
    """Seconds spent in rounds."""


class Runner(Generic[R]):
    """Runs ``evaluate(conn, clock())`` rounds on connections from ``connect`` until ``stop`` is set.

    ``evaluate`` returns None when another round holds the round lock (then the round is tried again after
    ``min_gap_s``), else its result, which goes to ``on_result`` with the round's time.
    """

    def __init__(self, connect: Callable[[], Connection], evaluate: Callable[[Connection, datetime], R | None],
                 clock: Callable[[], datetime], pace: Pace,
                 on_result: Callable[[R, datetime], None] | None = None) -> None:
        self._connect = connect
        self._evaluate = evaluate
        self._clock = clock
        self._pace = pace
        self._on_result = on_result
        self.counts = Counts()
        self.active = threading.Event()
        """Set while this runner is the active one."""

    def run(self, stop: threading.Event) -> None:
        """Until ``stop`` is set. Database outages are waited out; fatal database errors go through."""
        while not stop.is_set():
            conn: Connection | None = None
            try:
                conn = self._connect()
                self._serve(conn, stop)
            except DatabaseUnavailable as err:
                self.counts.failures += 1
                log.warning("%s; retrying in %g s", err, self._pace.retry_s)
                stop.wait(self._pace.retry_s)
            finally:
                self.active.clear()
                close_quietly(conn)

    def _serve(self, conn: Connection, stop: threading.Event) -> None:
        """Stand by until active, then run rounds on ``conn`` until ``stop``; a failure breaks out."""
        while not self._take_over(conn):
            if stop.wait(self._pace.retry_s):
                return
        self.counts.activations += 1
        self.active.set()
        log.info("active evaluator: rounds on notification (%s) and every %g s", READINGS, self._pace.interval_s)
        listener = Listener(conn, READINGS)
        pace = self._pace
        pending = True  # catch up: the readings stored while no runner was active
        next_woken = -float("inf")  # the earliest start of a round woken by a notification
        next_fallback = time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            if (pending and now >= next_woken) or now >= next_fallback:
                at = self._clock()
                result = self._evaluate(conn, at)
                took = time.monotonic() - now
                self.counts.busy_s += took
                next_woken = now + max(pace.min_gap_s, took / pace.busy_share)
                # None: another round held the lock and may have started before the commit we were woken for.
                pending = result is None
                next_fallback = now + pace.interval_s
                if result is not None:
                    self.counts.rounds += 1
                    if self._on_result is not None:
                        self._on_result(result, at)
                continue
            due = min(next_fallback, next_woken) if pending else next_fallback
            heard = listener.wait(min(due - now, _TICK_S))
            if heard:
                self.counts.notifications += heard
                pending = True

    def _take_over(self, conn: Connection) -> bool:
        with database_errors("taking over as the active evaluator", broken=lambda: conn.broken):
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (ACTIVE_KEY,)).fetchone()
        return bool(row and row[0])
