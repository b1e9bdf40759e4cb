"""Recovery after a run that died holding messages: the redelivered ones taken alone, the killer set aside.

The crash-loop guard's marks and the whole procedure are described in ``ingest.crash_guard``. While
recovering, everything is committed on the preparing thread: the committing thread stays idle, so the two
never share the writing connection. Recovery ends with the first batch that holds no redelivered message
(the broker resends those before anything new).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence

from gateways.mqtt import InboundMessage
from ingest.committer import Committed
from ingest.dead_letters import DeadLetter, fingerprint
from ingest.processor import BatchProcessor
from ingest.stats import IngestStats

__all__ = ["Recovery"]

log = logging.getLogger(__name__)


class Recovery:
    """Active from a start that found the previous run died (``ingest.crash_guard.GuardState.died``)."""

    def __init__(self, processor: BatchProcessor, stats: IngestStats, worker: str, on_committed: Committed,
                 killer: uuid.UUID | None) -> None:
        self._processor = processor
        self._stats = stats
        self._worker = worker
        self._on_committed = on_committed
        self._killer = killer
        self.active = True

    def run(self, messages: list[InboundMessage], stop: threading.Event) -> list[InboundMessage]:
        """Process the redelivered messages of ``messages`` one at a time, each marked first, then the rest of
        them; returns the messages left for the usual path: all of them once recovery is over, else none."""
        redelivered = [m for m in messages if m.duplicate]
        if not redelivered:
            self.active = False
            log.info("crash-loop guard: recovery over, back to batches")
            return messages
        processor = self._processor
        for message in redelivered:
            started = time.monotonic()
            identity = fingerprint(message.topic, message.payload)
            event_times: Sequence[float] = ()
            if identity == self._killer:
                reason = ("the worker died while it processed this message alone, after dying with it in a batch; "
                          "set aside by the crash-loop guard without being processed again")
                letter = DeadLetter.of(message.topic, message.payload, stage="crash", reason=reason,
                                       received_at=message.received_at)
                log.error("crash-loop guard: message %s (%s) killed the worker; stored as a dead letter",
                          identity, letter.topic)
                result = processor.store_dead_letters([letter], stop)
            else:
                processor.guard_trying(self._worker, identity, stop)
                prepared = processor.prepare([message], stop=stop, stats=self._stats)
                result = None if prepared is None else processor.commit(prepared, stop=stop, stats=self._stats)
                if prepared is not None:
                    event_times = prepared.event_times
            if result is None:
                continue  # the database went away at shutdown: the broker delivers it again
            self._on_committed([message], result, event_times, started)
        processor.guard_trying(self._worker, None, stop)
        rest = [m for m in messages if not m.duplicate]
        if rest:
            started = time.monotonic()
            batch = processor.prepare(rest, stop=stop, stats=self._stats)
            result = None if batch is None else processor.commit(batch, stop=stop, stats=self._stats)
            if batch is not None and result is not None:
                self._on_committed(batch.messages, result, batch.event_times, started)
        return []
