"""The sharded stream: several processes, one time-ordered, reproducible message sequence."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from device_simulators.events import StreamOptions
from device_simulators.messages import SimMessage
from device_simulators.parallel import ParallelStream, publish_sharded
from ioc_core.errors import FatalError
from ioc_core.settings import MqttUrl


def _take(workers: int, n: int) -> tuple[list[SimMessage], dict[str, int]]:
    with ParallelStream(40, StreamOptions(seed=3, duplicate_ratio=0.0), workers=workers, seed=3) as stream:
        messages = list(itertools.islice(stream, n))
        return messages, stream.stats()


def test_shards_merge_in_time_order_and_repeat_with_the_seed() -> None:
    first, stats = _take(2, 800)
    again, _ = _take(2, 800)
    assert first == again
    # Each shard is in time order up to a few seconds (ChirpStack's clock, dedup window), so is the merge.
    assert all(a.time <= b.time + 6.0 for a, b in itertools.pairwise(first))
    ids = Counter(m.deduplication_id for m in first if m.event == "up")
    assert max(ids.values()) == 1  # shards draw their own ids
    assert len({m.dev_eui for m in first}) == 40  # every device of both shards
    assert stats["messages"] >= 800


def test_one_worker_covers_the_whole_fleet() -> None:
    messages, _ = _take(1, 200)
    assert {m.event for m in messages} >= {"join", "up"}


def test_sharded_publishing_reports_a_broker_that_is_not_there() -> None:
    # Port 1 on loopback refuses at once; each shard reports the failure and the run fails with it.
    with pytest.raises(FatalError, match=r"simulator publishers failed.*cannot reach the broker"):
        publish_sharded(10, StreamOptions(), workers=2, url=MqttUrl.parse("mqtt://127.0.0.1:1"), rate=0, count=10)
