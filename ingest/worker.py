"""The ingest worker: MQTT in, batches through the pipeline, COPY and COMMIT, then the MQTT acks.

Two threads share the work. paho's network thread only appends messages to a buffer; the writer thread
takes a batch when it is full or old enough, processes and commits it, and only then acknowledges it.
Nothing is acked before it is durable, so a crash loses nothing, and the broker's Receive Maximum stops
delivery while commits are failing, so memory stays bounded.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import psycopg

from gateways.database import Connection, DatabaseUnavailable, connect, is_retriable
from gateways.migrations import Mode, storage_mode
from gateways.mqtt import InboundMessage, MqttConsumer
from ingest.dead_letters import DeadLetter, write_dead_letters
from ingest.devices import DeviceDirectory, DeviceRef, GatewayDirectory
from ingest.feed import OpenFeed
from ingest.pipeline import Batch, CodecLookup, build_rows, device_infos, gateways_heard, parse_messages
from ingest.stats import IngestStats
from ingest.writer import WriteResult, write_batch
from ioc_core.errors import FatalError
from ioc_core.settings import MqttUrl

__all__ = ["BatchProcessor", "IngestWorker", "WorkerConfig"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    name: str
    client_id: str
    topic_filter: str
    share_group: str | None
    batch_size: int
    batch_age_s: float
    receive_maximum: int
    session_expiry_s: int
    stats_interval_s: float


class NotMigrated(FatalError):
    """The database has no platform schema yet."""


class _Link:
    """One database connection, opened on demand and dropped when it fails."""

    def __init__(self, dsn: str, name: str) -> None:
        self._dsn = dsn
        self._name = name
        self.conn: Connection | None = None

    def get(self) -> Connection:
        if self.conn is None or self.conn.closed:
            # Autocommit: every write goes through an explicit ``transaction()`` block, and plain reads
            # must not leave a transaction open around them.
            self.conn = connect(self._dsn, autocommit=True, application_name=self._name)
        return self.conn

    @property
    def broken(self) -> bool:
        return self.conn is None or self.conn.closed or self.conn.broken

    def drop(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                self.conn.close()
        self.conn = None


class _Refused(Exception):
    """The database refused the batch for a reason retrying will not fix."""

    def __init__(self, err: psycopg.Error) -> None:
        super().__init__(str(err))
        self.err = err


class BatchProcessor:
    """Turns a list of messages into committed rows, retrying while the database is away.

    Two steps, so the worker can overlap them: ``prepare`` (parse, look up devices, decode, normalise;
    CPU work plus rare look-ups on its own connection) and ``commit`` (COPY and COMMIT on another
    connection; mostly waiting for PostgreSQL). ``process`` runs both, for dead-letter replay, so a
    replayed message takes exactly the path a live one takes.
    """

    def __init__(
        self, dsn: str, codecs: CodecLookup, *, max_backoff_s: float = 30.0, stop_grace_s: float = 30.0
    ) -> None:
        self.codecs = codecs
        self.devices = DeviceDirectory(codecs)
        self.gateways = GatewayDirectory()
        # One connection per thread that talks to the database: a psycopg connection is safe to share,
        # but its transactions are not, and a stats insert inside a batch transaction would commit it.
        self._lookup = _Link(dsn, "ioc-ingest-lookup")
        self._writer = _Link(dsn, "ioc-ingest")
        self._stats = _Link(dsn, "ioc-ingest-stats")
        self._mode: Mode | None = None
        self._max_backoff_s = max_backoff_s
        # How long to keep retrying a batch after a stop was asked for; then the broker redelivers it.
        self._stop_grace_s = stop_grace_s

    def connection(self) -> Connection:
        """The writing connection; checks once that the schema is installed."""
        conn = self._writer.get()
        if self._mode is None:
            mode = storage_mode(conn)
            if mode is None:
                raise NotMigrated("the database has no IOC schema yet: run `ioc db migrate` first")
            self._mode = mode
        return conn

    def stats_connection(self) -> Connection | None:
        """A connection for statistics only, or None while the database is away."""
        try:
            return self._stats.get()
        except DatabaseUnavailable:
            self._stats.drop()
            return None

    def drop_stats_connection(self) -> None:
        self._stats.drop()

    def close(self) -> None:
        self._lookup.drop()
        self._writer.drop()
        self._stats.drop()

    def _retrying(
        self,
        step: Callable[[], _T],
        link: _Link,
        what: int,
        stop: threading.Event | None,
        stats: IngestStats | None,
    ) -> _T | None:
        """Run ``step`` until it succeeds; None when ``stop`` is set and the database stays away."""
        backoff = 0.5
        stop_deadline: float | None = None
        while True:
            try:
                return step()
            except (DatabaseUnavailable, psycopg.Error) as err:
                if isinstance(err, psycopg.Error) and not is_retriable(err) and not link.broken:
                    raise _Refused(err) from err
                link.drop()
                if link is self._lookup:
                    # Cached ids may refer to rows that a restored database no longer has.
                    self.devices.invalidate()
                if stats:
                    stats.retried()
                if stop is not None and stop.is_set():
                    stop_deadline = stop_deadline or time.monotonic() + self._stop_grace_s
                    if time.monotonic() > stop_deadline:
                        log.error("giving up on %d messages at shutdown; the broker will redeliver them", what)
                        return None
                log.warning("database unavailable (%s); keeping %d messages, retrying in %.1f s",
                            _first_line(err), what, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)

    def prepare(
        self, messages: list[InboundMessage], *, stop: threading.Event | None = None,
        stats: IngestStats | None = None,
    ) -> Batch | None:
        parsed, dead = parse_messages(messages)
        infos, heard = device_infos(parsed), gateways_heard(parsed)

        def look_up() -> tuple[dict[str, DeviceRef], dict[str, int]]:
            conn = self._lookup.get()
            return self.devices.resolve(conn, infos), self.gateways.resolve(conn, heard)

        try:
            found = self._retrying(look_up, self._lookup, len(messages), stop, stats)
        except _Refused as refused:
            raise DatabaseUnavailable(f"device look-up refused: {refused}") from refused.err
        if found is None:
            return None
        batch = build_rows(parsed, found[0], found[1], self.codecs)
        batch.dead_letters[:0] = dead
        batch.messages = messages
        return batch

    def commit(
        self, batch: Batch, *, stop: threading.Event | None = None, stats: IngestStats | None = None
    ) -> WriteResult | None:
        def write() -> WriteResult:
            conn = self.connection()
            assert self._mode is not None
            return write_batch(conn, batch, self._mode)

        try:
            return self._retrying(write, self._writer, len(batch.messages), stop, stats)
        except _Refused as refused:
            return self._isolate(batch.messages, refused.err)

    def process(
        self, messages: list[InboundMessage], *, stop: threading.Event | None = None,
        stats: IngestStats | None = None,
    ) -> tuple[WriteResult, list[float]] | None:
        """Prepare and commit ``messages``; None when giving up at shutdown while the database is away."""
        batch = self.prepare(messages, stop=stop, stats=stats)
        if batch is None:
            return None
        result = self.commit(batch, stop=stop, stats=stats)
        return None if result is None else (result, batch.event_times)

    def _isolate(self, messages: list[InboundMessage], err: psycopg.Error) -> WriteResult:
        """A batch the database refuses for a reason other than availability: find the message at fault.

        Halving keeps the good messages flowing; the one that still fails alone becomes a dead letter.
        """
        if len(messages) == 1:
            message = messages[0]
            reason = f"database refused the row: {_first_line(err)}"
            letter = DeadLetter.of(message.topic, message.payload, stage="store", reason=reason,
                                   received_at=message.received_at)
            conn = self.connection()
            with conn.transaction():
                written = write_dead_letters(conn, [letter])
            log.warning("stored a message as a dead letter: %s", reason)
            return WriteResult(0, 0, 0, 0, written, frozenset({letter.fingerprint}))
        middle = len(messages) // 2
        totals = [0, 0, 0, 0, 0]
        failed: set[uuid.UUID] = set()
        stored: list[uuid.UUID] = []
        for half in (messages[:middle], messages[middle:]):
            batch = self.prepare(half)
            result = None if batch is None else self.commit(batch)
            if result is None:
                continue
            for i, value in enumerate((result.uplinks, result.duplicates, result.measurements,
                                       result.device_events, result.dead_letters)):
                totals[i] += value
            failed |= result.failed
            stored += result.stored
        uplinks, duplicates, measurements, events, dead = totals
        return WriteResult(uplinks, duplicates, measurements, events, dead, frozenset(failed), tuple(stored))


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class IngestWorker:
    """Consumes ChirpStack events from the broker until ``stop`` is set, then drains and exits."""

    def __init__(
        self, config: WorkerConfig, mqtt_url: MqttUrl, processor: BatchProcessor, feed: OpenFeed | None = None
    ) -> None:
        self.config = config
        self.processor = processor
        # The open feed publishes what was committed, after the ack, from threads of its own.
        self.feed = feed
        # The registry's JavaScript health counters (timeouts, crashes, disabled codecs), when it has any.
        self.stats = IngestStats(config.name, config.stats_interval_s, getattr(processor.codecs, "health", None))
        self._buffer: list[InboundMessage] = []
        self._ready = threading.Condition()
        self._failure: Exception | None = None
        self._consumer = MqttConsumer(
            mqtt_url,
            client_id=config.client_id,
            topic_filter=config.topic_filter,
            share_group=config.share_group,
            receive_maximum=config.receive_maximum,
            session_expiry_s=config.session_expiry_s,
            on_message=self._on_message,
        )

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """Block until the worker's subscription is in place; for callers that publish right after."""
        return self._consumer.wait_subscribed(timeout)

    def _on_message(self, message: InboundMessage) -> None:
        with self._ready:
            self._buffer.append(message)
            if len(self._buffer) >= self.config.batch_size:
                self._ready.notify()

    def _take(self, stop: threading.Event) -> list[InboundMessage]:
        """Wait for a full batch, or for the oldest message to reach the batch age, or for ``stop``."""
        with self._ready:
            while True:
                if len(self._buffer) >= self.config.batch_size or stop.is_set():
                    break
                if self._buffer:
                    age = time.time() - self._buffer[0].received_at
                    if age >= self.config.batch_age_s:
                        break
                    # Short waits: ``stop`` is an Event set by a signal handler and cannot notify us.
                    self._ready.wait(min(self.config.batch_age_s - age, 0.2))
                else:
                    self._ready.wait(0.2)
                if self.stats.due():
                    # Time to report: hand back an empty batch so the caller reports; the messages
                    # waiting here keep waiting for their batch to fill or to age.
                    return []
            batch = self._buffer[: self.config.batch_size]
            del self._buffer[: len(batch)]
            return batch

    def run(self, stop: threading.Event) -> None:
        # Connect to the database first: without a schema there is no point taking messages.
        try:
            self.processor.connection()
        except DatabaseUnavailable as err:
            log.warning("%s; the worker will keep trying", err)
        # Each batch allocates hundreds of thousands of short-lived objects, none in cycles; with CPython's
        # default thresholds the cyclic collector runs thousands of times per batch and rescans
        # everything that survived, start-up objects included. Freeze those and collect less often.
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        if self.feed is not None:
            self.feed.start()
        try:
            self._consumer.start()
        except Exception:
            if self.feed is not None:
                self.feed.stop()
            raise
        log.info("ingest worker %s running (batch %d / %.0f ms, receive maximum %d)",
                 self.config.name, self.config.batch_size, self.config.batch_age_s * 1000,
                 self.config.receive_maximum)
        # One prepared batch waits while the previous one commits: PostgreSQL's work on one batch
        # overlaps Python's work on the next, and memory stays bounded.
        handoff: queue.Queue[Batch | None] = queue.Queue(maxsize=1)
        committer = threading.Thread(target=self._commit_loop, args=(handoff, stop), name="ingest-commit")
        committer.start()
        try:
            while not stop.is_set():
                self._prepare(self._take(stop), handoff, stop)
            # Drain: what has arrived is committed and acked before we leave.
            with self._ready:
                rest, self._buffer = self._buffer, []
            for start in range(0, len(rest), self.config.batch_size):
                self._prepare(rest[start : start + self.config.batch_size], handoff, stop)
        finally:
            handoff.put(None)
            committer.join()
            if self.feed is not None:
                self.feed.stop()
            if self._failure is not None:
                self._consumer.stop()
                self.processor.close()
                raise self._failure
            self._consumer.stop()
            self._report()
            self.processor.close()
            log.info("ingest worker %s stopped: %d messages, %d uplinks, %d dead letters in total",
                     self.config.name, self.stats.totals.received, self.stats.totals.uplinks,
                     self.stats.totals.dead_letters)

    def _prepare(self, messages: list[InboundMessage], handoff: queue.Queue[Batch | None],
                 stop: threading.Event) -> None:
        if messages:
            batch = self.processor.prepare(messages, stop=stop, stats=self.stats)
            if batch is not None:
                batch.started = time.monotonic()
                handoff.put(batch)
        if self.stats.due():
            self._report()

    def _commit_loop(self, handoff: queue.Queue[Batch | None], stop: threading.Event) -> None:
        try:
            self._commit_batches(handoff, stop)
        except Exception as err:  # handed to run(), which re-raises it in the main thread
            self._failure = err
            stop.set()
            while handoff.get() is not None:
                pass  # unblock the preparing thread; nothing after a failure is acked

    def _commit_batches(self, handoff: queue.Queue[Batch | None], stop: threading.Event) -> None:
        while True:
            batch = handoff.get()
            if batch is None:
                return
            result = self.processor.commit(batch, stop=stop, stats=self.stats)
            if result is None:
                continue  # gave up at shutdown: not acked, so the broker delivers these again
            committed_at = time.time()
            self._consumer.ack(batch.messages)
            if self.feed is not None:
                self.feed.offer(batch, result)
            self.stats.batch_done(
                messages=len(batch.messages), uplinks=result.uplinks, duplicates=result.duplicates,
                measurements=result.measurements, device_events=result.device_events,
                dead_letters=result.dead_letters, seconds=time.monotonic() - batch.started,
                event_times=batch.event_times, received_times=[m.received_at for m in batch.messages],
                committed_at=committed_at,
            )

    def _report(self) -> None:
        if not self.stats.report(self.processor.stats_connection()):
            self.processor.drop_stats_connection()
