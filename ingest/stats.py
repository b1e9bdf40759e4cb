"""Progress and health of an ingest worker: counters, lag percentiles, a log line and a stats row."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from gateways.database import Connection
from ingest.codecs.breaker import CodecHealth, HealthCounts

__all__ = ["IngestStats"]

log = logging.getLogger(__name__)


@dataclass
class _Window:
    received: int = 0
    uplinks: int = 0
    duplicates: int = 0
    measurements: int = 0
    device_events: int = 0
    dead_letters: int = 0
    batches: int = 0
    batch_messages: int = 0
    batch_seconds: float = 0.0
    retries: int = 0
    lags: list[np.ndarray] = field(default_factory=list)
    latencies: list[np.ndarray] = field(default_factory=list)


class IngestStats:
    """Counts per reporting window plus running totals; lag is commit time minus the event's time."""

    def __init__(self, worker: str, interval_s: float, codec_health: CodecHealth | None = None) -> None:
        self.worker = worker
        # The JavaScript codecs' running totals; each report stores the difference since the last one.
        self._codec_health = codec_health
        self._codec_seen = HealthCounts()
        self.interval_s = interval_s
        self._window = _Window()
        self._window_started = time.monotonic()
        self.totals = _Window()
        self._last_idle_line = -1e18
        # batch_done runs on the committing thread, report on the preparing one.
        self._lock = threading.Lock()
        # Benchmarks set this to a list to keep every lag array (event time to commit, seconds).
        self.lag_history: list[np.ndarray] | None = None
        self._plain: bool | None = None

    def batch_done(
        self,
        *,
        messages: int,
        uplinks: int,
        duplicates: int,
        measurements: int,
        device_events: int,
        dead_letters: int,
        seconds: float,
        event_times: Sequence[float],
        received_times: list[float],
        committed_at: float,
    ) -> None:
        lags = committed_at - np.asarray(event_times, dtype=np.float64) if event_times else None
        latencies = committed_at - np.asarray(received_times, dtype=np.float64) if received_times else None
        with self._lock:  # batch_done runs on the committing thread, report on the preparing one
            for w in (self._window, self.totals):
                w.received += messages
                w.uplinks += uplinks
                w.duplicates += duplicates
                w.measurements += measurements
                w.device_events += device_events
                w.dead_letters += dead_letters
                w.batches += 1
                w.batch_messages += messages
                w.batch_seconds += seconds
            if lags is not None:
                self._window.lags.append(lags)
                if self.lag_history is not None:
                    self.lag_history.append(lags)
            if latencies is not None:
                self._window.latencies.append(latencies)

    def retried(self) -> None:
        with self._lock:
            self._window.retries += 1
            self.totals.retries += 1

    def _plain_rollup(self, conn: Connection) -> bool:
        """Whether this database keeps its rollups as tables (plain PostgreSQL), asked once."""
        if self._plain is None:
            row = conn.execute("SELECT value FROM platform_info WHERE key = 'storage_mode'").fetchone()
            self._plain = row is not None and row[0] == "postgresql"
        return self._plain

    def due(self) -> bool:
        return time.monotonic() - self._window_started >= self.interval_s

    def report(self, conn: Connection | None) -> bool:
        """Log the window and store it in ``ingest_stats``; False when the row could not be stored."""
        with self._lock:
            w, elapsed = self._window, time.monotonic() - self._window_started
            self._window, self._window_started = _Window(), time.monotonic()
        js = HealthCounts()
        if self._codec_health is not None:
            now = self._codec_health.counts()
            js, self._codec_seen = now.since(self._codec_seen), now
        p50 = p99 = l50 = l99 = None
        if w.lags:
            lags = np.concatenate(w.lags) * 1000.0
            p50, p99 = (float(x) for x in np.percentile(lags, [50, 99]))
        if w.latencies:
            latencies = np.concatenate(w.latencies) * 1000.0
            l50, l99 = (float(x) for x in np.percentile(latencies, [50, 99]))
        rate = w.received / elapsed if elapsed > 0 else 0.0
        idle = w.received == 0 and w.retries == 0 and js.quiet
        if idle and time.monotonic() - self._last_idle_line < 60.0:
            level = logging.DEBUG  # an idle worker says so once a minute, not every interval
        else:
            level = logging.INFO
            if idle:
                self._last_idle_line = time.monotonic()
        avg_size = w.batch_messages / w.batches if w.batches else None
        avg_ms = w.batch_seconds * 1000.0 / w.batches if w.batches else None
        log.log(
            level,
            "ingest: %.0f msg/s | %d uplinks, %d duplicates, %d measurements, %d events, %d dead letters | "
            "%d batches avg %s msgs %s ms | received→committed p50 %s p99 %s | event age p50 %s%s%s",
            rate, w.uplinks, w.duplicates, w.measurements, w.device_events, w.dead_letters, w.batches,
            f"{avg_size:.0f}" if avg_size else "-", f"{avg_ms:.0f}" if avg_ms else "-",
            _ms(l50), _ms(l99), _ms(p50),
            f" | {w.retries} retries" if w.retries else "", _js_line(js, self._codec_health),
        )
        if conn is None:
            return False
        try:
            with conn.transaction():
                stored = conn.execute(
                    """INSERT INTO ingest_stats (time, worker, interval_s, received, uplinks, duplicates,
                           measurements, device_events, dead_letters, batches, batch_size_avg, batch_ms_avg,
                           lag_ms_p50, lag_ms_p99, latency_ms_p50, latency_ms_p99, retries,
                           js_timeouts, js_crashes, js_out_of_memory, codec_refused, codecs_disabled)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                               %s, %s, %s, %s, %s)
                       ON CONFLICT DO NOTHING RETURNING time""",
                    (datetime.now(UTC), self.worker, elapsed, w.received, w.uplinks, w.duplicates,
                     w.measurements, w.device_events, w.dead_letters, w.batches, avg_size, avg_ms,
                     p50, p99, l50, l99, w.retries,
                     js.timeouts, js.crashes, js.out_of_memory, js.refused, js.disabled),
                ).fetchone()
                if stored is not None and self._plain_rollup(conn):
                    _add_to_hourly(conn, stored[0], self.worker, elapsed, w, avg_size, avg_ms, p50, p99)
        except Exception as err:  # statistics must never stop the ingest
            log.warning("could not store ingest statistics: %s", err)
            return False
        return True


def _add_to_hourly(conn: Connection, at: datetime, worker: str, elapsed: float, w: _Window,
                   avg_size: float | None, avg_ms: float | None, p50: float | None, p99: float | None) -> None:
    """Plain-PostgreSQL rollup_ingest_hourly, as TimescaleDB's continuous aggregate computes it."""
    conn.execute(
        """INSERT INTO rollup_ingest_hourly AS r
           VALUES (date_trunc('hour', %s::timestamptz, 'UTC'), %s, %s::real::float8, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                   %s, %s, %s)
           ON CONFLICT (worker, bucket) DO UPDATE SET
               seconds = r.seconds + EXCLUDED.seconds, received = r.received + EXCLUDED.received,
               uplinks = r.uplinks + EXCLUDED.uplinks, duplicates = r.duplicates + EXCLUDED.duplicates,
               measurements = r.measurements + EXCLUDED.measurements,
               device_events = r.device_events + EXCLUDED.device_events,
               dead_letters = r.dead_letters + EXCLUDED.dead_letters, batches = r.batches + EXCLUDED.batches,
               batch_messages = coalesce(r.batch_messages + EXCLUDED.batch_messages, r.batch_messages,
                                         EXCLUDED.batch_messages),
               batch_ms = coalesce(r.batch_ms + EXCLUDED.batch_ms, r.batch_ms, EXCLUDED.batch_ms),
               lag_ms_p50 = GREATEST(r.lag_ms_p50, EXCLUDED.lag_ms_p50),
               lag_ms_p99 = GREATEST(r.lag_ms_p99, EXCLUDED.lag_ms_p99),
               retries = r.retries + EXCLUDED.retries""",
        (at, worker, elapsed, w.received, w.uplinks, w.duplicates, w.measurements, w.device_events,
         w.dead_letters, w.batches, None if avg_size is None else avg_size * w.batches,
         None if avg_ms is None else avg_ms * w.batches, p50, p99, w.retries),
    )


def _js_line(js: HealthCounts, health: CodecHealth | None) -> str:
    """The JavaScript codecs' part of the log line, only when something went wrong with them."""
    if health is None or (js.quiet and not js.disabled):
        return ""
    disabled = health.disabled()
    return (f" | JS codecs: {js.timeouts} timeouts, {js.crashes} crashes, {js.out_of_memory} out of memory, "
            f"{js.refused} uplinks refused" + (f"; disabled: {', '.join(disabled)}" if disabled else ""))


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.1f} s" if value >= 10_000 else f"{value:.0f} ms"
