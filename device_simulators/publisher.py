"""Drive a message stream at a chosen pace into a sink: the MQTT broker, a JSON-lines file, or a list.

Pacing is either a fixed ``rate`` (messages per real second; 0 means as fast as possible), the simulated
clock scaled by ``time_scale`` (simulated seconds per real second), so a day of city life can be played in
24 minutes at ``time_scale=60``, or ``real_time``: each message waits for the wall clock to reach its own
time, so a stream that starts in the past backfills as fast as the sink takes it and then keeps pace with
the clock, never publishing an event dated in the future.
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from device_simulators.messages import SimMessage
from gateways.mqtt import MqttPublisher
from ioc_core.settings import MqttUrl

__all__ = [
    "JsonLinesWriter",
    "MessageSink",
    "RunSummary",
    "mqtt_delivery",
    "publish_to_broker",
    "read_json_lines",
    "run",
]


class MessageSink(Protocol):
    """What the simulator needs from a broker client (``gateways.mqtt.MqttPublisher`` has it)."""

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None: ...


@dataclass(slots=True)
class RunSummary:
    messages: int = 0
    by_event: Counter[str] = field(default_factory=Counter)
    by_encoding: Counter[str] = field(default_factory=Counter)
    malformed: int = 0
    duplicates: int = 0
    bytes: int = 0
    elapsed_s: float = 0.0
    simulated_s: float = 0.0
    first_time: float | None = None
    last_time: float | None = None

    @property
    def rate(self) -> float:
        """Messages per real second achieved."""
        return self.messages / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def add(self, message: SimMessage) -> None:
        self.messages += 1
        self.by_event[message.event] += 1
        self.by_encoding[message.encoding] += 1
        self.malformed += message.malformed
        self.duplicates += message.duplicate
        self.bytes += len(message.payload)
        if self.first_time is None:
            self.first_time = message.time
        self.last_time = message.time

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "by_event": dict(self.by_event),
            "by_encoding": dict(self.by_encoding),
            "malformed": self.malformed,
            "duplicates": self.duplicates,
            "bytes": self.bytes,
            "elapsed_s": round(self.elapsed_s, 3),
            "simulated_s": round(self.simulated_s, 3),
            "rate_per_s": round(self.rate, 1),
        }


def run(
    messages: Iterable[SimMessage],
    deliver: Callable[[SimMessage], None],
    *,
    rate: float | None = None,
    time_scale: float = 1.0,
    count: int | None = None,
    duration: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_progress: Callable[[RunSummary], None] | None = None,
    progress_every: int = 1000,
    should_stop: Callable[[], bool] | None = None,
    real_time: bool = False,
    wall_clock: Callable[[], float] = time.time,
    on_message: Callable[[SimMessage], None] | None = None,
) -> RunSummary:
    """Deliver ``messages`` until ``count`` messages or ``duration`` seconds, whichever comes first.

    With ``rate`` > 0 messages go out at that many per second and ``duration`` is real time. With ``rate``
    0 they go out as fast as ``deliver`` takes them and ``duration`` is simulated time divided by
    ``time_scale``. With no ``rate``, message ``i`` is due when the real clock has advanced by its
    simulated offset divided by ``time_scale``, and ``duration`` is real time (and equals the simulated
    span divided by ``time_scale``). With ``real_time`` a message is due when ``wall_clock`` (POSIX
    seconds) reaches its time, and ``duration`` is real time. ``on_message`` sees each delivered message.
    """
    if real_time and rate is not None:
        raise ValueError("real_time paces by the wall clock; it takes no rate")
    if rate is not None and rate < 0:
        raise ValueError("rate must be >= 0")
    if time_scale <= 0:
        raise ValueError("time_scale must be > 0")
    summary = RunSummary()
    started = clock()
    sim_start: float | None = None
    sim_limit: float | None = None
    unpaced = rate == 0
    for message in messages:
        if count is not None and summary.messages >= count:
            break
        if sim_start is None:
            sim_start = message.time
            if duration is not None and not real_time and (unpaced or rate is None):
                sim_limit = sim_start + duration * time_scale
        if sim_limit is not None and message.time > sim_limit:
            break
        now = clock()
        if duration is not None and not unpaced and now - started >= duration:
            break
        if real_time:
            # Wait in short steps, so a stop request is seen within a fraction of a second.
            while (ahead := message.time - wall_clock()) > 0.002:
                if should_stop is not None and should_stop():
                    break
                sleep(min(ahead, 0.25))
        elif not unpaced:
            if rate is not None:
                due = started + summary.messages / rate
            else:
                due = started + (message.time - sim_start) / time_scale
            # Sleeping per message costs more than it saves at high rates; wait only when 2 ms ahead.
            if due - now > 0.002:
                sleep(due - now)
        if should_stop is not None and should_stop():
            break
        deliver(message)
        summary.add(message)
        if on_message is not None:
            on_message(message)
        if on_progress is not None and summary.messages % progress_every == 0:
            summary.elapsed_s = clock() - started
            on_progress(summary)
    summary.elapsed_s = clock() - started
    if summary.first_time is not None and summary.last_time is not None:
        summary.simulated_s = summary.last_time - summary.first_time
    return summary


def mqtt_delivery(sink: MessageSink) -> Callable[[SimMessage], None]:
    """Adapt a broker publisher to ``run``: publish each message's topic and bytes, never retained."""

    def deliver(message: SimMessage) -> None:
        sink.publish(message.topic, message.payload, False)

    return deliver


class JsonLinesWriter:
    """Writes one JSON object per message: topic, base64 payload and what the simulator knows about it."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def __call__(self, message: SimMessage) -> None:
        self._stream.write(
            json.dumps(
                {
                    "topic": message.topic,
                    "payload": base64.b64encode(message.payload).decode("ascii"),
                    "event": message.event,
                    "encoding": message.encoding,
                    "dev_eui": message.dev_eui,
                    "deduplication_id": message.deduplication_id,
                    "malformed": message.malformed,
                    "duplicate": message.duplicate,
                    "time": message.time,
                },
                ensure_ascii=False,
                separators=(",", ":"),
            )
            + "\n"
        )


def read_json_lines(path: Path) -> Iterator[SimMessage]:
    """Messages written by ``JsonLinesWriter``, for replaying a recorded run at any rate."""
    with path.open(encoding="utf-8") as stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                yield SimMessage(
                    topic=row["topic"],
                    payload=base64.b64decode(row["payload"]),
                    event=row["event"],
                    dev_eui=row["dev_eui"],
                    deduplication_id=row.get("deduplication_id"),
                    malformed=bool(row.get("malformed", False)),
                    encoding=row.get("encoding", "json"),
                    duplicate=bool(row.get("duplicate", False)),
                    time=float(row.get("time", 0.0)),
                )
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"{path}:{number}: not a simulator message line: {err}") from err


def publish_to_broker(
    messages: Iterable[SimMessage],
    url: MqttUrl,
    *,
    client_id: str | None = None,
    qos: int = 1,
    ca_file: Path | None = None,
    rate: float | None = None,
    time_scale: float = 1.0,
    count: int | None = None,
    duration: float | None = None,
    on_progress: Callable[[RunSummary], None] | None = None,
    progress_every: int = 1000,
    should_stop: Callable[[], bool] | None = None,
    flush_timeout_s: float = 60.0,
    real_time: bool = False,
    on_message: Callable[[SimMessage], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> RunSummary:
    """Publish a stream through ``gateways.mqtt.MqttPublisher`` (QoS 1 by default) and wait for the acks."""
    with MqttPublisher(url, client_id=client_id, qos=qos, ca_file=ca_file) as broker:
        summary = run(
            messages,
            mqtt_delivery(broker),
            rate=rate,
            time_scale=time_scale,
            count=count,
            duration=duration,
            on_progress=on_progress,
            progress_every=progress_every,
            should_stop=should_stop,
            real_time=real_time,
            on_message=on_message,
            sleep=sleep,
        )
        broker.flush(flush_timeout_s)
    return summary
