"""The per-codec circuit breaker on a hand-driven clock: opening, refusing, the trial, the window."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from ingest.codecs.breaker import BreakerPolicy, CodecHealth, HealthCounts

START = datetime(2026, 12, 3, 10, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return datetime.fromtimestamp(START.timestamp() + self.now - 1000.0, UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def health(clock: Clock, failures: int = 3, window_s: float = 60.0, cooldown_s: float = 300.0) -> CodecHealth:
    return CodecHealth(BreakerPolicy(failures, window_s, cooldown_s), clock=clock, wall=clock.wall)


def test_opens_after_n_failures_in_the_window_and_refuses_with_the_retry_time(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    h = health(clock)
    breaker = h.breaker("js:spin")
    with caplog.at_level(logging.WARNING, logger="ingest.codecs.breaker"):
        for _ in range(3):
            assert breaker.refusal() is None
            breaker.failed("timeout")
            clock.now += 1
    assert breaker.refusal() == "codec disabled after 3 failures in 60 s; retry at 2026-12-03T10:05:02Z"
    assert h.disabled() == ["js:spin"]
    assert h.counts() == HealthCounts(timeouts=3, refused=1, disabled=1)
    assert "JavaScript codec js:spin disabled after 3 failures" in caplog.text


def test_failures_older_than_the_window_do_not_count(clock: Clock) -> None:
    breaker = health(clock).breaker("js:slow")
    for _ in range(10):
        breaker.failed("crash")
        breaker.failed("memory")
        clock.now += 61
    assert breaker.refusal() is None and not breaker.disabled


def test_after_the_cool_down_one_trial_runs_and_success_closes(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    h = health(clock, failures=1)
    breaker = h.breaker("js:flaky")
    breaker.failed("timeout")
    clock.now += 299
    assert breaker.refusal() is not None
    clock.now += 1
    assert breaker.refusal() is None  # the trial
    assert breaker.refusal() is not None  # others wait for its outcome
    with caplog.at_level(logging.WARNING, logger="ingest.codecs.breaker"):
        breaker.succeeded()
    assert "js:flaky re-enabled" in caplog.text
    assert breaker.refusal() is None and h.disabled() == []


def test_a_failed_trial_opens_the_breaker_for_another_cool_down(clock: Clock) -> None:
    breaker = health(clock, failures=2).breaker("js:broken")
    breaker.failed("timeout")
    breaker.failed("timeout")
    clock.now += 300
    assert breaker.refusal() is None
    breaker.failed("crash")
    refusal = breaker.refusal()
    assert refusal is not None and refusal.endswith("retry at 2026-12-03T10:10:00Z")
    clock.now += 300
    assert breaker.refusal() is None


def test_counts_since_an_earlier_snapshot(clock: Clock) -> None:
    h = health(clock, failures=100)
    breaker = h.breaker("js:x")
    breaker.failed("timeout")
    first = h.counts()
    breaker.failed("memory")
    breaker.failed("crash")
    assert h.counts().since(first) == HealthCounts(timeouts=0, crashes=1, out_of_memory=1, refused=0, disabled=0)
