"""The open-data limits: token buckets per key on a fake clock, and the cap on concurrent exports."""

from __future__ import annotations

import threading

import pytest

from ioc_api.rate_limit import ExportSlots, TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_one_request_per_refill() -> None:
    clock = Clock()
    buckets = TokenBuckets(per_minute=60, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [None, None, None]
    assert buckets.take("a") == pytest.approx(1.0)
    clock.now += 0.5
    assert buckets.take("a") == pytest.approx(0.5)  # a refused request costs nothing
    clock.now += 0.5
    assert buckets.take("a") is None and buckets.take("a") == pytest.approx(1.0)
    clock.now += 3600
    assert [buckets.take("a") for _ in range(4)][-1] == pytest.approx(1.0)  # refilled to the burst, not beyond


def test_keys_have_buckets_of_their_own() -> None:
    buckets = TokenBuckets(per_minute=6, burst=1, clock=Clock())
    assert buckets.take("a") is None
    assert buckets.take("a") == pytest.approx(10.0)
    assert buckets.take("b") is None


def test_retry_after_is_whole_seconds_never_early_never_zero() -> None:
    assert [TokenBuckets.retry_after(s) for s in (0.0, 0.01, 1.0, 1.2, 59.9)] == [1, 1, 1, 2, 60]


def test_full_buckets_are_forgotten_past_the_pruning_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TokenBuckets, "_PRUNE_AT", 10)
    clock = Clock()
    buckets = TokenBuckets(per_minute=60, burst=2, clock=clock)
    for i in range(10):
        buckets.take(f"k{i}")
    clock.now += 10
    buckets.take("busy")
    buckets.take("busy")
    assert set(buckets._buckets) == {"busy"}


def test_concurrent_takes_never_exceed_the_burst() -> None:
    buckets = TokenBuckets(per_minute=0.001, burst=50)
    allowed: list[int] = []

    def client() -> None:
        allowed.extend(1 for _ in range(20) if buckets.take("shared") is None)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(allowed) == 50


def test_export_slots_cap_each_key_and_the_process() -> None:
    slots = ExportSlots(total=3, per_key=2)
    assert slots.acquire("a") is None and slots.acquire("a") is None
    assert slots.acquire("a") == "this key streams 2 exports already (at most 2)"
    assert slots.acquire("b") is None
    assert slots.acquire("c") == "3 exports are streaming on this server already"
    slots.release("a")
    assert slots.running == 2 and slots.acquire("c") is None
    for key in ("a", "b", "c"):
        slots.release(key)
    assert slots.running == 0
