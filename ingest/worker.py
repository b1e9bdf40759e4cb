"""The ingest worker: MQTT in, batches through the pipeline, COPY and COMMIT, then the MQTT acks.

Two threads share the work. paho's network thread only appends messages to a buffer; the writer thread
takes a batch when it is full or old enough, processes and commits it, and only then acknowledges it.
Nothing is acked before it is durable, so a crash loses nothing, and the broker's Receive Maximum stops
delivery while commits are failing, so memory stays bounded.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from dataclasses import dataclass

import psycopg

from gateways.database import Connection, DatabaseUnavailable, connect, is_retriable
from gateways.migrations import Mode, storage_mode
from gateways.mqtt import InboundMessage, MqttConsumer
from ingest.dead_letters import DeadLetter, write_dead_letters
from ingest.devices import DeviceDirectory, GatewayDirectory
from ingest.pipeline import CodecLookup, build_rows, device_infos, gateways_heard, parse_messages
from ingest.stats import IngestStats
from ingest.writer import WriteResult, write_batch
from ioc_core.errors import FatalError
from ioc_core.settings import MqttUrl

__all__ = ["BatchProcessor", "IngestWorker", "WorkerConfig"]

log = logging.getLogger(__name__)


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
    max_backoff_s: float = 30.0
    drain_grace_s: float = 30.0


class NotMigrated(FatalError):
    """The database has no platform schema yet."""


class BatchProcessor:
    """Turns a list of messages into committed rows, retrying while the database is away.

    Shared by the worker and by dead-letter replay, so a replayed message takes exactly the path a live
    one takes.
    """

    def __init__(self, dsn: str, codecs: CodecLookup, *, max_backoff_s: float = 30.0) -> None:
        self._dsn = dsn
        self.codecs = codecs
        self.devices = DeviceDirectory(codecs)
        self.gateways = GatewayDirectory()
        self._conn: Connection | None = None
        self._mode: Mode | None = None
        self._max_backoff_s = max_backoff_s

    def connection(self) -> Connection:
        if self._conn is None or self._conn.closed:
            # Autocommit: every write goes through an explicit ``transaction()`` block, and plain reads
            # must not leave a transaction open around them.
            self._conn = connect(self._dsn, autocommit=True, application_name="ioc-ingest")
            mode = storage_mode(self._conn)
            if mode is None:
                raise NotMigrated("the database has no IOC schema yet: run `ioc db migrate` first")
            self._mode = mode
        return self._conn

    def drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = None
        # Cached ids may refer to rows that a restored database no longer has.
        self.devices.invalidate()

    def close(self) -> None:
        self.drop_connection()

    def process(
        self,
        messages: list[InboundMessage],
        *,
        stop: threading.Event | None = None,
        stats: IngestStats | None = None,
    ) -> tuple[WriteResult, list[float]] | None:
        """Commit ``messages``; None when giving up because ``stop`` was set while the database was away."""
        backoff = 0.5
        stop_deadline: float | None = None
        while True:
            try:
                return self._attempt(messages)
            except (DatabaseUnavailable, psycopg.Error) as err:
                if isinstance(err, psycopg.Error) and not is_retriable(err) and not self._broken():
                    return self._isolate(messages, err)
                self.drop_connection()
                if stats:
                    stats.retried()
                if stop is not None and stop.is_set():
                    stop_deadline = stop_deadline or time.monotonic() + 30.0
                    if time.monotonic() > stop_deadline:
                        log.error("giving up on %d messages at shutdown; the broker will redeliver them",
                                  len(messages))
                        return None
                log.warning("database unavailable (%s); keeping %d messages, retrying in %.1f s",
                            str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__,
                            len(messages), backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)

    def _broken(self) -> bool:
        return self._conn is None or self._conn.closed or self._conn.broken

    def _attempt(self, messages: list[InboundMessage]) -> tuple[WriteResult, list[float]]:
        conn = self.connection()
        assert self._mode is not None
        parsed, dead = parse_messages(messages)
        devices = self.devices.resolve(conn, device_infos(parsed))
        gateways = self.gateways.resolve(conn, gateways_heard(parsed))
        batch = build_rows(parsed, devices, gateways, self.codecs)
        batch.dead_letters[:0] = dead
        try:
            return write_batch(conn, batch, self._mode), batch.event_times
        except psycopg.Error:
            raise

    def _isolate(self, messages: list[InboundMessage], err: psycopg.Error) -> tuple[WriteResult, list[float]]:
        """A batch the database refuses for a reason other than availability: find the message at fault.

        Halving keeps the good messages flowing; the one that still fails alone becomes a dead letter.
        """
        if len(messages) == 1:
            message = messages[0]
            reason = f"database refused the row: {str(err).strip().splitlines()[0] if str(err).strip() else err}"
            letter = DeadLetter.of(message.topic, message.payload, stage="store", reason=reason,
                                   received_at=message.received_at)
            conn = self.connection()
            with conn.transaction():
                written = write_dead_letters(conn, [letter])
            log.warning("stored a message as a dead letter: %s", reason)
            return WriteResult(0, 0, 0, 0, written, frozenset({letter.fingerprint})), []
        middle = len(messages) // 2
        totals = [0, 0, 0, 0, 0]
        failed: set[uuid.UUID] = set()
        times: list[float] = []
        for half in (messages[:middle], messages[middle:]):
            outcome = self.process(half)
            if outcome is None:
                continue
            result, half_times = outcome
            for i, value in enumerate((result.uplinks, result.duplicates, result.measurements,
                                       result.device_events, result.dead_letters)):
                totals[i] += value
            failed |= result.failed
            times += half_times
        uplinks, duplicates, measurements, events, dead = totals
        return WriteResult(uplinks, duplicates, measurements, events, dead, frozenset(failed)), times


class IngestWorker:
    """Consumes ChirpStack events from the broker until ``stop`` is set, then drains and exits."""

    def __init__(self, config: WorkerConfig, mqtt_url: MqttUrl, processor: BatchProcessor) -> None:
        self.config = config
        self.processor = processor
        self.stats = IngestStats(config.name, config.stats_interval_s)
        self._buffer: list[InboundMessage] = []
        self._ready = threading.Condition()
        self._consumer = MqttConsumer(
            mqtt_url,
            client_id=config.client_id,
            topic_filter=config.topic_filter,
            share_group=config.share_group,
            receive_maximum=config.receive_maximum,
            session_expiry_s=config.session_expiry_s,
            on_message=self._on_message,
        )

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
                    self._ready.wait(self.config.batch_age_s - age)
                else:
                    self._ready.wait(0.5)
                if self.stats.due():
                    break
            batch = self._buffer[: self.config.batch_size]
            del self._buffer[: len(batch)]
            return batch

    def run(self, stop: threading.Event) -> None:
        # Connect to the database first: without a schema there is no point taking messages.
        try:
            self.processor.connection()
        except DatabaseUnavailable as err:
            log.warning("%s; the worker will keep trying", err)
        self._consumer.start()
        log.info("ingest worker %s running (batch %d / %.0f ms, receive maximum %d)",
                 self.config.name, self.config.batch_size, self.config.batch_age_s * 1000,
                 self.config.receive_maximum)
        try:
            while not stop.is_set():
                self._cycle(self._take(stop), stop)
            # Drain: what has arrived is committed and acked before we leave.
            with self._ready:
                rest, self._buffer = self._buffer, []
            for start in range(0, len(rest), self.config.batch_size):
                self._cycle(rest[start : start + self.config.batch_size], stop)
        finally:
            self._consumer.stop()
            self._report()
            self.processor.close()
            log.info("ingest worker %s stopped: %d messages, %d uplinks, %d dead letters in total",
                     self.config.name, self.stats.totals.received, self.stats.totals.uplinks,
                     self.stats.totals.dead_letters)

    def _cycle(self, messages: list[InboundMessage], stop: threading.Event) -> None:
        if messages:
            started = time.monotonic()
            outcome = self.processor.process(messages, stop=stop, stats=self.stats)
            if outcome is not None:
                result, event_times = outcome
                committed_at = time.time()
                self._consumer.ack(messages)
                self.stats.batch_done(
                    messages=len(messages), uplinks=result.uplinks, duplicates=result.duplicates,
                    measurements=result.measurements, device_events=result.device_events,
                    dead_letters=result.dead_letters, seconds=time.monotonic() - started,
                    event_times=event_times, received_times=[m.received_at for m in messages],
                    committed_at=committed_at,
                )
        if self.stats.due():
            self._report()

    def _report(self) -> None:
        conn = None
        try:
            conn = self.processor.connection()
        except Exception:  # statistics never stop the worker; the log line still goes out
            conn = None
        self.stats.report(conn)
