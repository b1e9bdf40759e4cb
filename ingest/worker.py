"""The ingest worker: MQTT in, batches through the pipeline, COPY and COMMIT, then the MQTT acks.

This module wires the parts together and runs their life cycle: the broker's consumer feeds a
``MessageBuffer`` (``ingest.batching``) from paho's network thread; the worker's thread takes batches from it
and prepares them (``BatchProcessor.prepare``, ``ingest.processor``); a ``Committer`` (``ingest.committer``)
commits them on a thread of its own, and only then are they acknowledged, offered to the open feed and
counted. Nothing is acked before it is durable, so a crash loses nothing, and the broker's Receive Maximum
stops delivery while commits are failing, so memory stays bounded.

No message can stop the worker: what one message raises makes it a dead letter; database errors are sorted
by SQLSTATE (``gateways.database.classify``), and a refusal of a batch's values (a look-up, an enrolment or
the write) is narrowed down by halving to the message at fault. The crash-loop guard (``ingest.crash_guard``,
``ingest.recovery``) covers what cannot be caught: after a run that died holding messages, the redelivered
ones are taken alone.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from gateways.database import DatabaseUnavailable
from gateways.mqtt import InboundMessage, MqttConsumer
from ingest.batching import MessageBuffer
from ingest.committer import Committer
from ingest.feed import OpenFeed
from ingest.processor import BatchProcessor
from ingest.recovery import Recovery
from ingest.stats import IngestStats
from ingest.writer import WriteResult
from ioc_core.errors import FatalError
from ioc_core.settings import MqttUrl

__all__ = ["IngestWorker", "WorkerConfig"]

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
        # The codec library's JavaScript health counters (timeouts, crashes, disabled codecs), when it has any.
        self.stats = IngestStats(config.name, config.stats_interval_s, getattr(processor.codecs, "health", None))
        self._buffer = MessageBuffer(config.batch_size, config.batch_age_s)
        self._consumer = MqttConsumer(
            mqtt_url,
            client_id=config.client_id,
            topic_filter=config.topic_filter,
            share_group=config.share_group,
            receive_maximum=config.receive_maximum,
            session_expiry_s=config.session_expiry_s,
            on_message=self._buffer.add,
            max_payload=processor.limits.max_event_bytes,
            keep_payload=processor.limits.keep_bytes,
        )
        # Set at start when the previous run died holding messages (ingest.crash_guard).
        self._recovery: Recovery | None = None

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """Block until the worker's subscription is in place; for callers that publish right after."""
        return self._consumer.wait_subscribed(timeout)

    def run(self, stop: threading.Event) -> None:
        # Connect to the database first: without a schema there is no point taking messages.
        try:
            self.processor.connection()
        except DatabaseUnavailable as err:
            log.warning("%s; the worker will keep trying", err)
        if self.config.crash_guard:
            state = self.processor.guard_begin(self.config.client_id, stop)
            if state is not None and state.died:
                self._recovery = Recovery(self.processor, self.stats, self.config.client_id, self._done,
                                          state.killer)
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
        committer = Committer(self.processor, self.stats, self._done)
        committer.start(stop)
        clean = False
        try:
            while not stop.is_set():
                self._prepare(self._buffer.take(stop, self.stats.due), committer, stop)
            # Drain: what has arrived is committed and acked before we leave.
            for messages in self._buffer.drain():
                self._prepare(messages, committer, stop)
            clean = True
        except FatalError:
            # The configuration or the database is at fault, not the message in hand: do not blame it.
            if self.config.crash_guard:
                self.processor.guard_trying(self.config.client_id, None)
            raise
        finally:
            committer.close()
            if self.feed is not None:
                self.feed.stop()
            if committer.failure is not None:
                self._consumer.stop()
                self.processor.close()
                raise committer.failure
            if clean and self.config.crash_guard:
                self.processor.guard_end(self.config.client_id)
            self._consumer.stop()
            self._report()
            self.processor.close()
            log.info("ingest worker %s stopped: %d messages, %d uplinks, %d dead letters in total",
                     self.config.name, self.stats.totals.received, self.stats.totals.uplinks,
                     self.stats.totals.dead_letters)

    def _prepare(self, messages: list[InboundMessage], committer: Committer, stop: threading.Event) -> None:
        if messages and self._recovery is not None and self._recovery.active:
            messages = self._recovery.run(messages, stop)
        if messages:
            batch = self.processor.prepare(messages, stop=stop, stats=self.stats)
            if batch is not None:
                committer.put(batch, time.monotonic())
        if self.stats.due():
            self._report()

    def _done(self, messages: list[InboundMessage], result: WriteResult, event_times: Sequence[float],
              started: float) -> None:
        """A batch is committed: acknowledge it, offer it to the open feed, count it."""
        committed_at = time.time()
        self._consumer.ack(messages)
        if self.feed is not None:
            self.feed.offer(result)
        self.stats.batch_done(
            messages=len(messages), uplinks=result.uplinks, duplicates=result.duplicates,
            measurements=result.measurements, device_events=result.device_events,
            dead_letters=result.dead_letters, seconds=time.monotonic() - started,
            event_times=event_times, received_times=[m.received_at for m in messages],
            committed_at=committed_at,
        )

    def _report(self) -> None:
        if not self.stats.report(self.processor.stats_connection()):
            self.processor.drop_stats_connection()
