"""Prepared batches committed on a thread of their own, so PostgreSQL's work on one batch overlaps Python's on the next.

One prepared batch waits while the previous one commits (a hand-off queue of one), so memory stays bounded.
A committed batch goes to ``on_committed`` (the worker acknowledges it, offers it to the open feed and
counts it). A batch given up at shutdown is not handed on: unacknowledged, the broker delivers it again.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from typing import NamedTuple

from gateways.mqtt import InboundMessage
from ingest.pipeline import Batch
from ingest.processor import BatchProcessor
from ingest.stats import IngestStats
from ingest.writer import WriteResult

__all__ = ["Committed", "Committer"]

Committed = Callable[[list[InboundMessage], WriteResult, Sequence[float], float], None]
"""Called with a committed batch's messages, the write's result, the event times and when the batch started
(``time.monotonic()``)."""


class _Prepared(NamedTuple):
    batch: Batch
    started: float


class Committer:
    """Commits what ``put`` hands over, in order, on the thread ``start`` starts; ``close`` waits for the last."""

    def __init__(self, processor: BatchProcessor, stats: IngestStats, on_committed: Committed) -> None:
        self._processor = processor
        self._stats = stats
        self._on_committed = on_committed
        self._handoff: queue.Queue[_Prepared | None] = queue.Queue(maxsize=1)
        self._thread: threading.Thread | None = None
        self.failure: Exception | None = None
        """What stopped the committing thread, for the worker to raise on its own thread."""

    def start(self, stop: threading.Event) -> None:
        self._thread = threading.Thread(target=self._run, args=(stop,), name="ingest-commit")
        self._thread.start()

    def put(self, batch: Batch, started: float) -> None:
        """Hand ``batch`` over; blocks while the previous one still waits to be committed."""
        self._handoff.put(_Prepared(batch, started))

    def close(self) -> None:
        """Commit what was handed over, then end the thread; see ``failure`` afterwards."""
        self._handoff.put(None)
        if self._thread is not None:
            self._thread.join()

    def _run(self, stop: threading.Event) -> None:
        try:
            self._commit_all(stop)
        except Exception as err:  # handed to the worker, which re-raises it in the main thread
            self.failure = err
            stop.set()
            while self._handoff.get() is not None:
                pass  # unblock the preparing thread; nothing after a failure is acked

    def _commit_all(self, stop: threading.Event) -> None:
        while True:
            prepared = self._handoff.get()
            if prepared is None:
                return
            batch = prepared.batch
            result = self._processor.commit(batch, stop=stop, stats=self._stats)
            if result is None:
                continue  # gave up at shutdown: not acked, so the broker delivers these again
            self._on_committed(batch.messages, result, batch.event_times, prepared.started)
