"""The ingest worker: MQTT in, batches through the pipeline, COPY and COMMIT, then the MQTT acks.

Two threads share the work. paho's network thread only appends messages to a buffer; the writer thread
takes a batch when it is full or old enough, processes and commits it, and only then acknowledges it.
Nothing is acked before it is durable, so a crash loses nothing, and the broker's Receive Maximum stops
delivery while commits are failing, so memory stays bounded.

No message can stop the worker: what one message raises makes it a dead letter; database errors are sorted
by SQLSTATE (``gateways.database.classify``), and a refusal of a batch's values (a look-up, an enrolment or
the write) is narrowed down by halving to the message at fault. The crash-loop guard (``ingest.crash_guard``)
covers what cannot be caught: after a run that died holding messages, the redelivered ones are taken alone.
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

from gateways.database import (
    Connection,
    DatabaseUnavailable,
    RowRefused,
    classify,
    connect,
    translate,
)
from gateways.migrations import Mode, storage_mode
from gateways.mqtt import InboundMessage, MqttConsumer
from ingest import crash_guard
from ingest.dead_letters import DeadLetter, fingerprint, write_dead_letters
from ingest.devices import DeviceDirectory, DeviceRef, GatewayDirectory
from ingest.feed import OpenFeed
from ingest.pipeline import (
    Batch,
    CodecLookup,
    EdgeLimits,
    Parsed,
    build_rows,
    device_infos,
    gateways_heard,
    parse_messages,
)
from ingest.stats import IngestStats
from ingest.writer import WriteResult, write_batch
from ioc_core.errors import FatalError
from ioc_core.settings import MqttUrl

__all__ = ["BatchProcessor", "IngestWorker", "WorkerConfig"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_V = TypeVar("_V")


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
    crash_guard: bool = True


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


class BatchProcessor:
    """Turns a list of messages into committed rows, retrying while the database is away.

    Two steps, so the worker can overlap them: ``prepare`` (parse, look up devices, decode, normalise;
    CPU work plus rare look-ups on its own connection) and ``commit`` (COPY and COMMIT on another
    connection; mostly waiting for PostgreSQL). ``process`` runs both, for dead-letter replay, so a
    replayed message takes exactly the path a live one takes.
    """

    def __init__(
        self, dsn: str, codecs: CodecLookup, *, max_backoff_s: float = 30.0, stop_grace_s: float = 30.0,
        limits: EdgeLimits | None = None,
    ) -> None:
        self.codecs = codecs
        self.limits = limits or EdgeLimits()
        self.devices = DeviceDirectory(codecs)
        self.gateways = GatewayDirectory()
        # One connection per thread that talks to the database: a psycopg connection is safe to share,
        # but its transactions are not, and a stats insert inside a batch transaction would commit it.
        self._lookup = _Link(dsn, "ioc-ingest-lookup")
        self._writer = _Link(dsn, "ioc-ingest")
        self._stats = _Link(dsn, "ioc-ingest-stats")
        self._guard = _Link(dsn, "ioc-ingest-guard")
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
        self._guard.drop()

    # --- the crash-loop guard's marks (ingest.crash_guard), on a connection of their own --------------------
    def _guard_conn(self) -> Connection:
        fresh = self._guard.conn is None or self._guard.conn.closed
        conn = self._guard.get()
        if fresh:
            # The mark must outlive our process, not the server: no need to wait for the disk.
            conn.execute("SET synchronous_commit = off")
        return conn

    def guard_begin(self, worker: str, stop: threading.Event | None = None) -> crash_guard.GuardState | None:
        return self._retrying(lambda: crash_guard.begin(self._guard_conn(), worker), self._guard, 0, stop, None,
                              "crash guard")

    def guard_trying(self, worker: str, suspect: uuid.UUID | None, stop: threading.Event | None = None) -> None:
        self._retrying(lambda: crash_guard.trying(self._guard_conn(), worker, suspect), self._guard, 1, stop, None,
                       "crash guard")

    def guard_end(self, worker: str) -> None:
        try:
            crash_guard.end(self._guard_conn(), worker)
        except (DatabaseUnavailable, psycopg.Error) as err:
            # The next start then recovers needlessly (slower for its first messages), nothing worse.
            log.warning("could not record the clean stop: %s", _first_line(err))
            self._guard.drop()

    def store_dead_letters(self, letters: list[DeadLetter], stop: threading.Event | None = None) -> WriteResult | None:
        """Write dead letters alone (the crash-loop guard's)."""

        def write() -> int:
            conn = self.connection()
            with conn.transaction():
                return write_dead_letters(conn, letters)

        written = self._retrying(write, self._writer, len(letters), stop, None)
        if written is None:
            return None
        return WriteResult(0, 0, 0, 0, written, frozenset(d.fingerprint for d in letters))

    def _retrying(
        self,
        step: Callable[[], _T],
        link: _Link,
        what: int,
        stop: threading.Event | None,
        stats: IngestStats | None,
        label: str = "batch write",
    ) -> _T | None:
        """Run ``step`` until it succeeds; None when ``stop`` is set and the database stays away.

        Sorted by SQLSTATE: connection-class errors (or a connection that broke) retry; a refusal of the
        values raises ``RowRefused``, anything else ``DatabaseFailed``. An exception that is not the
        database's (a value psycopg cannot dump) is a refusal of the values too, unless the link broke.
        """
        backoff = 0.5
        stop_deadline: float | None = None
        while True:
            try:
                return step()
            except (RowRefused, FatalError):
                raise
            except DatabaseUnavailable as err:
                problem: BaseException = err
            except psycopg.Error as err:
                # A broken connection retries whatever the error says; psycopg reports the break itself.
                if not link.broken and classify(err) != "retry":
                    raise translate(err, label) from err
                problem = err
            except Exception as err:
                if not link.broken:
                    raise RowRefused(f"values the database driver cannot send: {type(err).__name__}: {err}") \
                        from err
                problem = err
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
                        _first_line(problem), what, backoff)
            time.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff_s)

    def prepare(
        self, messages: list[InboundMessage], *, stop: threading.Event | None = None,
        stats: IngestStats | None = None,
    ) -> Batch | None:
        parsed, dead = parse_messages(messages, self.limits)
        infos, heard = device_infos(parsed), gateways_heard(parsed)
        what = len(messages)

        def look_up() -> tuple[dict[str, DeviceRef], dict[str, int]]:
            conn = self._lookup.get()
            return self.devices.resolve(conn, infos), self.gateways.resolve(conn, heard)

        try:
            found = self._retrying(look_up, self._lookup, what, stop, stats, "device look-up")
        except RowRefused:
            found = None
            # One device or gateway of the batch has values the database refuses (enrolment): find it.
            devices = self._narrow(infos, lambda part: self.devices.resolve(self._lookup.get(), part), what, stop,
                                   stats)
            gateways = self._narrow(heard, lambda part: self.gateways.resolve(self._lookup.get(), part), what,
                                    stop, stats)
            if devices is None or gateways is None:
                return None
            parsed = self._drop_refused(parsed, devices[1], gateways[1], dead)
            found = devices[0], gateways[0]
        if found is None:
            return None
        batch = build_rows(parsed, found[0], found[1], self.codecs)
        batch.dead_letters[:0] = dead
        batch.messages = messages
        return batch

    def _narrow(
        self,
        items: dict[str, _V],
        resolve: Callable[[dict[str, _V]], dict[str, _T]],
        what: int,
        stop: threading.Event | None,
        stats: IngestStats | None,
    ) -> tuple[dict[str, _T], dict[str, str]] | None:
        """Resolve ``items`` in halves until each refusal is pinned on one key; (found, refused key -> reason)."""
        found: dict[str, _T] = {}
        refused: dict[str, str] = {}
        parts = [items]
        while parts:
            part = parts.pop()
            if not part:
                continue

            def attempt(chunk: dict[str, _V] = part) -> dict[str, _T]:
                return resolve(chunk)

            try:
                got = self._retrying(attempt, self._lookup, what, stop, stats, "device look-up")
            except RowRefused as err:
                keys = list(part)
                if len(keys) == 1:
                    refused[keys[0]] = err.reason
                else:
                    middle = len(keys) // 2
                    parts += [{k: part[k] for k in keys[:middle]}, {k: part[k] for k in keys[middle:]}]
                continue
            if got is None:
                return None
            found.update(got)
        return found, refused

    @staticmethod
    def _drop_refused(
        parsed: list[Parsed], devices: dict[str, str], gateways: dict[str, str], dead: list[DeadLetter]
    ) -> list[Parsed]:
        """The messages whose device or gateway the database refused become dead letters at stage device."""
        kept: list[Parsed] = []
        for p in parsed:
            info = p.event.device_info
            assert info is not None
            reason = devices.get(info.dev_eui)
            if reason is None:
                for rx in getattr(p.event, "rx_info", ()):
                    reason = gateways.get(rx.gateway_id)
                    if reason is not None:
                        reason = f"gateway {rx.gateway_id}: {reason}"
                        break
            else:
                reason = f"device {info.dev_eui}: {reason}"
            if reason is None:
                kept.append(p)
                continue
            m = p.message
            log.warning("dead letter at stage device: %s", reason)
            dead.append(DeadLetter.of(m.topic, m.payload, stage="device", reason=reason, received_at=m.received_at,
                                      dev_eui=info.dev_eui))
        return kept

    def commit(
        self, batch: Batch, *, stop: threading.Event | None = None, stats: IngestStats | None = None
    ) -> WriteResult | None:
        def write() -> WriteResult:
            conn = self.connection()
            assert self._mode is not None
            return write_batch(conn, batch, self._mode)

        try:
            return self._retrying(write, self._writer, len(batch.messages), stop, stats)
        except RowRefused as refused:
            return self._isolate(batch.messages, refused)

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

    def _isolate(self, messages: list[InboundMessage], err: RowRefused) -> WriteResult:
        """A batch the database refuses for a reason other than availability: find the message at fault.

        Halving keeps the good messages flowing; the one that still fails alone becomes a dead letter.
        """
        if len(messages) == 1:
            message = messages[0]
            reason = f"database refused the row: {err.reason}"
            letter = DeadLetter.of(message.topic, message.payload, stage="store", reason=reason,
                                   received_at=message.received_at)
            log.warning("stored a message as a dead letter: %s", reason)
            result = self.store_dead_letters([letter])
            assert result is not None  # no stop event: retries until the database answers
            return result
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
        self.stats = IngestStats(config.name, config.stats_interval_s)
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
            max_payload=processor.limits.max_event_bytes,
            keep_payload=processor.limits.keep_bytes,
        )
        # Crash-loop guard (ingest.crash_guard): set at start when the previous run died holding messages.
        self._recovering = False
        self._killer: uuid.UUID | None = None

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
        if self.config.crash_guard:
            state = self.processor.guard_begin(self.config.client_id, stop)
            if state is not None and state.died:
                self._recovering, self._killer = True, state.killer
                log.warning("the previous run of %s died holding messages: taking the redelivered ones alone%s",
                            self.config.client_id,
                            f"; message {state.killer} killed it and will be set aside" if state.killer else "")
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
        clean = False
        try:
            while not stop.is_set():
                self._prepare(self._take(stop), handoff, stop)
            # Drain: what has arrived is committed and acked before we leave.
            with self._ready:
                rest, self._buffer = self._buffer, []
            for start in range(0, len(rest), self.config.batch_size):
                self._prepare(rest[start : start + self.config.batch_size], handoff, stop)
            clean = True
        except FatalError:
            # The configuration or the database is at fault, not the message in hand: do not blame it.
            if self.config.crash_guard:
                self.processor.guard_trying(self.config.client_id, None)
            raise
        finally:
            handoff.put(None)
            committer.join()
            if self.feed is not None:
                self.feed.stop()
            if self._failure is not None:
                self._consumer.stop()
                self.processor.close()
                raise self._failure
            if clean and self.config.crash_guard:
                self.processor.guard_end(self.config.client_id)
            self._consumer.stop()
            self._report()
            self.processor.close()
            log.info("ingest worker %s stopped: %d messages, %d uplinks, %d dead letters in total",
                     self.config.name, self.stats.totals.received, self.stats.totals.uplinks,
                     self.stats.totals.dead_letters)

    def _prepare(self, messages: list[InboundMessage], handoff: queue.Queue[Batch | None],
                 stop: threading.Event) -> None:
        if messages and self._recovering:
            messages = self._recover(messages, stop)
        if messages:
            batch = self.processor.prepare(messages, stop=stop, stats=self.stats)
            if batch is not None:
                batch.started = time.monotonic()
                handoff.put(batch)
        if self.stats.due():
            self._report()

    def _recover(self, messages: list[InboundMessage], stop: threading.Event) -> list[InboundMessage]:
        """Recovery after a run that died: the redelivered messages one at a time, each marked first.

        Everything is committed here, on this thread, while recovering: the committing thread stays idle,
        so the two never share the writing connection. Recovery ends with the first batch that holds no
        redelivered message (the broker resends those before anything new); that batch is returned for the
        usual path.
        """
        redelivered = [m for m in messages if m.duplicate]
        if not redelivered:
            self._recovering = False
            log.info("crash-loop guard: recovery over, back to batches")
            return messages
        worker = self.config.client_id
        for message in redelivered:
            started = time.monotonic()
            identity = fingerprint(message.topic, message.payload)
            if identity == self._killer:
                reason = ("the worker died while it processed this message alone, after dying with it in a batch; "
                          "set aside by the crash-loop guard without being processed again")
                letter = DeadLetter.of(message.topic, message.payload, stage="crash", reason=reason,
                                       received_at=message.received_at)
                log.error("crash-loop guard: message %s (%s) killed the worker; stored as a dead letter",
                          identity, letter.topic)
                result = self.processor.store_dead_letters([letter], stop)
                batch = Batch(messages=[message])
            else:
                self.processor.guard_trying(worker, identity, stop)
                prepared = self.processor.prepare([message], stop=stop, stats=self.stats)
                result = None if prepared is None else self.processor.commit(prepared, stop=stop, stats=self.stats)
                batch = prepared or Batch(messages=[message])
            if result is None:
                continue  # the database went away at shutdown: the broker delivers it again
            batch.started = started
            self._done(batch, result)
        self.processor.guard_trying(worker, None, stop)
        rest = [m for m in messages if not m.duplicate]
        if rest:
            started = time.monotonic()
            prepared = self.processor.prepare(rest, stop=stop, stats=self.stats)
            result = None if prepared is None else self.processor.commit(prepared, stop=stop, stats=self.stats)
            if prepared is not None and result is not None:
                prepared.started = started
                self._done(prepared, result)
        return []

    def _done(self, batch: Batch, result: WriteResult) -> None:
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
            self._done(batch, result)

    def _report(self) -> None:
        if not self.stats.report(self.processor.stats_connection()):
            self.processor.drop_stats_connection()
