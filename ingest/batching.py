"""Messages from the broker gathered into batches: a batch is taken when it is full or its oldest message is old enough.

paho's network thread only appends (``add``); the worker's preparing thread waits for a batch (``take``) and,
at shutdown, takes what is left (``drain``). As in Singer's sinks, size bounds the work per commit and age
bounds how long a quiet stream waits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from gateways.mqtt import InboundMessage

__all__ = ["MessageBuffer"]

# Longest single wait: ``stop`` is an Event set by a signal handler and cannot notify the condition.
_POLL_S = 0.2


class MessageBuffer:
    """The messages delivered and not yet taken, in arrival order."""

    def __init__(self, batch_size: int, batch_age_s: float) -> None:
        self.batch_size = batch_size
        self.batch_age_s = batch_age_s
        self._messages: list[InboundMessage] = []
        self._ready = threading.Condition()

    def add(self, message: InboundMessage) -> None:
        """paho's callback: keep ``message``, and wake the taker when a batch is full."""
        with self._ready:
            self._messages.append(message)
            if len(self._messages) >= self.batch_size:
                self._ready.notify()

    def take(self, stop: threading.Event, wake: Callable[[], bool]) -> list[InboundMessage]:
        """The next batch, once it is full or its oldest message reaches the batch age.

        Returns earlier when ``stop`` is set (with what is there, up to a batch) or when ``wake()`` turns true
        while no batch is ready (with nothing: the messages waiting keep waiting to fill or to age), so the
        caller can do its periodic work on time.
        """
        with self._ready:
            while True:
                if len(self._messages) >= self.batch_size or stop.is_set():
                    break
                if self._messages:
                    age = time.time() - self._messages[0].received_at
                    if age >= self.batch_age_s:
                        break
                    self._ready.wait(min(self.batch_age_s - age, _POLL_S))
                else:
                    self._ready.wait(_POLL_S)
                if wake():
                    return []
            batch = self._messages[: self.batch_size]
            del self._messages[: len(batch)]
            return batch

    def drain(self) -> Iterator[list[InboundMessage]]:
        """Everything left, in batches: the worker commits it before it stops."""
        with self._ready:
            rest, self._messages = self._messages, []
        for start in range(0, len(rest), self.batch_size):
            yield rest[start : start + self.batch_size]
