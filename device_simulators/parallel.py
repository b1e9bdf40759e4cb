"""The fleet simulated by several processes, each taking every k-th device: merged into one stream, or
each publishing on its own broker connection.

One Python process renders ~10-15k events/s and one paho client publishes a few thousand QoS 1 messages
a second; shards scale both with the cores. Each shard is an
``EventStream`` over its slice of the fleet with its own random stream (``StreamOptions.stream_id``) and the
same weather, so the same seed and shard count give the same messages. Batches travel through bounded
queues, which keeps memory flat when the consumer is slower than the shards.
"""

from __future__ import annotations

import heapq
import itertools
import multiprocessing
import os
import queue
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

from device_simulators.events import EventStream, StreamOptions
from device_simulators.fleet import Fleet, build_fleet
from device_simulators.messages import SimMessage
from device_simulators.publisher import RunSummary, publish_to_broker
from ioc_core.errors import FatalError
from ioc_core.settings import MqttUrl

__all__ = ["ParallelStream", "publish_sharded"]

_BATCH = 500
_QUEUE_BATCHES = 8

# One message as it crosses the process boundary: the SimMessage fields in order.
_Row = tuple[str, bytes, str, str, str | None, bool, str, bool, float]


def _shard(
    devices: int, seed: int, cayenne_share: float, options: StreamOptions, shard: int, shards: int, out: Any
) -> None:
    """Worker process: simulate every ``shards``-th device and send batches of rows until stopped."""
    fleet = build_fleet(devices, seed=seed, cayenne_runtime_share=cayenne_share)
    mine = Fleet(fleet.seed, fleet.tenant_id, fleet.tenant_name, fleet.devices[shard::shards], fleet.gateways)
    stream = EventStream(mine, replace(options, stream_id=f"/shard-{shard}-of-{shards}"))
    while True:
        rows: list[_Row] = [
            (m.topic, m.payload, m.event, m.dev_eui, m.deduplication_id, m.malformed, m.encoding, m.duplicate,
             m.time)
            for m in itertools.islice(stream, _BATCH)
        ]  # fmt: skip
        out.put((rows, stream.stats.as_dict()))
        if len(rows) < _BATCH:
            out.put(None)
            return


class ParallelStream(Iterator[SimMessage]):
    """Like ``EventStream(build_fleet(devices, seed=...), options)`` but spread over ``workers`` processes.

    Use it as a context manager (or call ``close``) so the worker processes end with it.
    """

    def __init__(
        self,
        devices: int,
        options: StreamOptions,
        *,
        workers: int,
        seed: int = 1,
        cayenne_runtime_share: float = 0.5,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        context = multiprocessing.get_context("spawn")  # no fork: the parent may hold broker threads
        self._queues = [context.Queue(maxsize=_QUEUE_BATCHES) for _ in range(workers)]
        self._processes = [
            context.Process(
                target=_shard,
                args=(devices, seed, cayenne_runtime_share, options, shard, workers, self._queues[shard]),
                name=f"ioc-simulate-shard-{shard}",
                daemon=True,
            )
            for shard in range(workers)
        ]
        for process in self._processes:
            process.start()
        self._stats: list[dict[str, Any]] = [{} for _ in range(workers)]
        self._merged = heapq.merge(*(self._rows(i) for i in range(workers)), key=_time)

    def _rows(self, shard: int) -> Iterator[SimMessage]:
        source = self._queues[shard]
        while True:
            try:
                item = source.get(timeout=60.0)
            except queue.Empty:
                if not self._processes[shard].is_alive():
                    raise RuntimeError(f"simulator shard {shard} died") from None
                continue
            if item is None:
                return
            rows, stats = item
            self._stats[shard] = stats
            for row in rows:
                yield SimMessage(*row)

    def __iter__(self) -> Iterator[SimMessage]:
        return self

    def __next__(self) -> SimMessage:
        return next(self._merged)

    def stats(self) -> dict[str, Any]:
        """The shards' ``StreamStats`` summed (as of the batches received so far)."""
        total: Counter[str] = Counter()
        for stats in self._stats:
            for key, value in stats.items():
                if isinstance(value, int):
                    total[key] += value
        return dict(total)

    def close(self) -> None:
        for process in self._processes:
            if process.is_alive():
                process.terminate()
        for process in self._processes:
            process.join(timeout=5.0)
        for source in self._queues:
            source.cancel_join_thread()
            source.close()

    def __enter__(self) -> ParallelStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _time(message: SimMessage) -> float:
    return message.time


def _publishing_shard(
    devices: int,
    seed: int,
    cayenne_share: float,
    options: StreamOptions,
    shard: int,
    shards: int,
    broker: dict[str, Any],
    pacing: dict[str, Any],
    out: Any,
) -> None:
    """Worker process: simulate every ``shards``-th device and publish it on its own broker connection."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    try:
        fleet = build_fleet(devices, seed=seed, cayenne_runtime_share=cayenne_share)
        mine = Fleet(fleet.seed, fleet.tenant_id, fleet.tenant_name, fleet.devices[shard::shards], fleet.gateways)
        stream = EventStream(mine, replace(options, stream_id=f"/shard-{shard}-of-{shards}"))

        def progress(summary: RunSummary) -> None:
            out.put(("progress", shard, summary.messages, summary.malformed, summary.duplicates))

        summary = publish_to_broker(
            stream,
            broker["url"],
            client_id=f"{broker['client_id']}-{shard}" if broker["client_id"] else None,
            qos=broker["qos"],
            ca_file=broker["ca_file"],
            on_progress=progress,
            should_stop=stop.is_set,
            **pacing,
        )
        out.put(("done", shard, _summary_state(summary), stream.stats.as_dict()))
    except Exception as err:  # reported to the parent, which fails the run with it
        out.put(("error", shard, f"{type(err).__name__}: {err}"))


def _summary_state(summary: RunSummary) -> dict[str, Any]:
    state = summary.as_dict()
    state["elapsed_s"], state["simulated_s"] = summary.elapsed_s, summary.simulated_s
    return state


def publish_sharded(
    devices: int,
    options: StreamOptions,
    *,
    workers: int,
    url: MqttUrl,
    seed: int = 1,
    cayenne_runtime_share: float = 0.5,
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
) -> tuple[RunSummary, dict[str, Any]]:
    """Simulate and publish with ``workers`` processes, each with its own share of the devices, rate and
    count and its own broker connection (one Python MQTT client tops out at a few thousand QoS 1 messages
    a second). Returns the combined run summary and stream statistics.
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    context = multiprocessing.get_context("spawn")
    out: Any = context.Queue()
    broker = {"url": url, "client_id": client_id, "qos": qos, "ca_file": ca_file}
    processes = []
    for shard in range(workers):
        pacing = {
            "rate": None if rate is None else rate / workers,
            "time_scale": time_scale,
            "count": None if count is None else count // workers + (shard < count % workers),
            "duration": duration,
            "progress_every": max(1, progress_every // workers),
        }
        process = context.Process(
            target=_publishing_shard,
            args=(devices, seed, cayenne_runtime_share, options, shard, workers, broker, pacing, out),
            name=f"ioc-simulate-publisher-{shard}",
        )
        process.start()
        processes.append(process)
    progress = [(0, 0, 0)] * workers
    states: list[dict[str, Any] | None] = [None] * workers
    stats: Counter[str] = Counter()
    errors: list[str] = []
    finished = 0
    stopping = False
    try:
        while finished < workers:
            if not stopping and should_stop is not None and should_stop():
                stopping = True
                for process in processes:
                    if process.is_alive():
                        _interrupt(process)  # the shard stops, waits for its acks and reports
            try:
                item = out.get(timeout=0.25)
            except queue.Empty:
                if not any(p.is_alive() for p in processes):
                    errors.append("a publisher process ended without reporting")
                    break
                continue
            kind, shard = item[0], item[1]
            if kind == "progress":
                progress[shard] = item[2:]
                if on_progress is not None:
                    on_progress(_combined(progress))
                continue
            finished += 1
            if kind == "done":
                states[shard] = item[2]
                stats.update({k: v for k, v in item[3].items() if isinstance(v, int)})
            else:
                errors.append(f"shard {shard}: {item[2]}")
    finally:
        for process in processes:
            process.join(timeout=30.0)
            if process.is_alive():
                process.kill()
    if errors:
        raise FatalError("simulator publishers failed: " + "; ".join(errors))
    summary = RunSummary()
    for state in states:
        if state is None:
            continue
        summary.messages += state["messages"]
        summary.by_event.update(state["by_event"])
        summary.by_encoding.update(state["by_encoding"])
        summary.malformed += state["malformed"]
        summary.duplicates += state["duplicates"]
        summary.bytes += state["bytes"]
        summary.elapsed_s = max(summary.elapsed_s, state["elapsed_s"])
        summary.simulated_s = max(summary.simulated_s, state["simulated_s"])
    return summary, dict(stats)


def _interrupt(process: Any) -> None:
    if process.pid is not None:
        os.kill(process.pid, signal.SIGINT)


def _combined(progress: list[tuple[int, int, int]]) -> RunSummary:
    summary = RunSummary()
    summary.messages = sum(p[0] for p in progress)
    summary.malformed = sum(p[1] for p in progress)
    summary.duplicates = sum(p[2] for p in progress)
    return summary
