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

import gc
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass

from gateways.database import DatabaseUnavailable
from gateways.mqtt import InboundMessage, MqttConsumer
from ingest.dead_letters import DeadLetter, fingerprint
from ingest.feed import OpenFeed
from ingest.pipeline import Batch
from ingest.processor import BatchProcessor, NotMigrated
from ingest.stats import IngestStats
from ingest.writer import WriteResult
from ioc_core.errors import FatalError
from ioc_core.settings import MqttUrl

# BatchProcessor and NotMigrated live in ingest.processor; re-exported for the callers that import them here.
__all__ = ["BatchProcessor", "IngestWorker", "NotMigrated", "WorkerConfig"]

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
    crash_guard: bool = True


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
