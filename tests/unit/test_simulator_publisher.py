"""Pacing, stopping and sinks of the simulator's publisher, against a fake clock and a list sink."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import pytest

from device_simulators.events import EventStream, StreamOptions
from device_simulators.fleet import build_fleet
from device_simulators.messages import SimMessage
from device_simulators.publisher import (
    JsonLinesWriter,
    MessageSink,
    RunSummary,
    mqtt_delivery,
    read_json_lines,
    run,
)
from gateways.mqtt import MqttPublisher


class FakeClock:
    """Time moves only when the publisher sleeps (and a little per delivered message)."""

    def __init__(self, per_message: float = 0.0) -> None:
        self.now = 1000.0
        self.per_message = per_message
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class ListSink:
    def __init__(self, clock: FakeClock | None = None) -> None:
        self.published: list[tuple[str, bytes, bool]] = []
        self._clock = clock

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.published.append((topic, payload, retain))
        if self._clock is not None:
            self._clock.now += self._clock.per_message


def _messages(n: int, spacing: float = 1.0) -> list[SimMessage]:
    return [
        SimMessage(
            f"application/a/device/{i:016x}/event/up", b"{}", "up", f"{i:016x}", None, i % 10 == 0, "json",
            i % 7 == 0, 5000.0 + i * spacing,
        )
        for i in range(n)
    ]


def test_fixed_rate_paces_real_time() -> None:
    clock = FakeClock()
    sink = ListSink(clock)
    summary = run(_messages(1000), mqtt_delivery(sink), rate=100.0, clock=clock, sleep=clock.sleep)
    assert len(sink.published) == summary.messages == 1000
    assert summary.elapsed_s == pytest.approx(9.99, abs=0.01)
    assert summary.rate == pytest.approx(100.0, rel=0.01)
    assert all(retain is False for _, _, retain in sink.published)


def test_rate_is_kept_when_delivery_takes_time() -> None:
    clock = FakeClock(per_message=0.004)  # the broker takes 4 ms per message: 250/s at most
    summary = run(_messages(500), mqtt_delivery(ListSink(clock)), rate=100.0, clock=clock, sleep=clock.sleep)
    assert summary.rate == pytest.approx(100.0, rel=0.02)
    too_fast = FakeClock(per_message=0.004)
    summary = run(_messages(500), mqtt_delivery(ListSink(too_fast)), rate=1000.0, clock=too_fast,
                  sleep=too_fast.sleep)  # fmt: skip
    assert summary.rate == pytest.approx(250.0, rel=0.02) and not too_fast.sleeps


def test_time_scale_follows_the_simulated_clock() -> None:
    clock = FakeClock()
    messages = _messages(61, spacing=60.0)  # one message per simulated minute
    summary = run(messages, mqtt_delivery(ListSink()), time_scale=60.0, clock=clock, sleep=clock.sleep)
    assert summary.messages == 61
    assert summary.elapsed_s == pytest.approx(60.0, abs=0.01)  # an hour in a minute
    assert summary.simulated_s == pytest.approx(3600.0)


def test_unpaced_never_sleeps() -> None:
    clock = FakeClock()
    summary = run(_messages(300), mqtt_delivery(ListSink()), rate=0, clock=clock, sleep=clock.sleep)
    assert summary.messages == 300 and not clock.sleeps


def test_stops_on_count_duration_or_request() -> None:
    clock = FakeClock()
    assert run(_messages(100), lambda m: None, rate=0, count=42, clock=clock, sleep=clock.sleep).messages == 42
    clock = FakeClock()
    summary = run(_messages(1000), lambda m: None, rate=50.0, duration=2.0, clock=clock, sleep=clock.sleep)
    assert summary.messages == pytest.approx(100, abs=1)
    # Unpaced, the duration is simulated time divided by the time scale: 10 s x 6 = 60 simulated seconds.
    clock = FakeClock()
    summary = run(_messages(1000), lambda m: None, rate=0, duration=10.0, time_scale=6.0, clock=clock,
                  sleep=clock.sleep)  # fmt: skip
    assert summary.messages == 61
    stop_after = iter([False] * 5 + [True])
    summary = run(_messages(100), lambda m: None, rate=0, should_stop=lambda: next(stop_after))
    assert summary.messages == 5


def test_summary_counts_and_progress() -> None:
    seen: list[int] = []

    def progress(summary: RunSummary) -> None:
        seen.append(summary.messages)

    summary = run(_messages(100), lambda m: None, rate=0, on_progress=progress, progress_every=25)
    assert seen == [25, 50, 75, 100]
    assert summary.malformed == 10 and summary.duplicates == 15
    assert summary.by_event == {"up": 100} and summary.by_encoding == {"json": 100}
    assert summary.as_dict()["messages"] == 100 and summary.bytes == 200


def test_bad_pacing_is_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        run([], lambda m: None, rate=-1)
    with pytest.raises(ValueError, match="time_scale"):
        run([], lambda m: None, time_scale=0)


def test_json_lines_round_trip(tmp_path: Path) -> None:
    fleet = build_fleet(40, seed=1)
    messages = list(itertools.islice(EventStream(fleet, StreamOptions(encoding="mixed", malformed_ratio=0.1)), 300))
    path = tmp_path / "run.jsonl"
    with path.open("w", encoding="utf-8") as stream:
        summary = run(messages, JsonLinesWriter(stream), rate=0)
    assert summary.messages == 300
    assert list(read_json_lines(path)) == messages
    path.write_text('{"topic": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"run\.jsonl:1"):
        list(read_json_lines(path))


def test_writer_writes_one_line_per_message() -> None:
    buffer = io.StringIO()
    writer = JsonLinesWriter(buffer)
    for message in _messages(3):
        writer(message)
    assert buffer.getvalue().count("\n") == 3


def test_the_real_mqtt_publisher_fits_the_sink_protocol() -> None:
    sink: type[MessageSink] = MqttPublisher
    assert callable(sink.publish)


def test_a_real_stream_at_a_real_rate() -> None:
    stream = EventStream(build_fleet(100, seed=1), StreamOptions())
    clock = FakeClock()
    sink = ListSink(clock)
    started = clock.now
    summary = run(stream, mqtt_delivery(sink), rate=500.0, count=250, clock=clock, sleep=clock.sleep)
    assert summary.messages == len(sink.published) == 250
    assert 0.4 < clock.now - started < 2.0


def test_real_time_backfills_the_past_at_once_then_never_runs_ahead_of_the_wall_clock() -> None:
    clock = FakeClock()
    clock.now = 5050.0  # the wall clock: the first 51 messages (5000..5050) are the past
    delivered_at: list[tuple[float, float]] = []
    summary = run(_messages(100), mqtt_delivery(ListSink(clock)), real_time=True, clock=clock,
                  wall_clock=clock, sleep=clock.sleep,
                  on_message=lambda m: delivered_at.append((m.time, clock.now)))
    assert summary.messages == 100
    assert all(at == 5050.0 for _, at in delivered_at[:51])  # the backfill went out without waiting
    assert all(at >= t - 0.002 for t, at in delivered_at)  # nothing before its time
    assert delivered_at[-1][1] == pytest.approx(5099.0, abs=0.01)  # then one a second, as dated
    assert max(clock.sleeps) <= 0.25  # short waits, so a stop is seen quickly


def test_real_time_stops_while_waiting_for_the_clock() -> None:
    clock = FakeClock()
    clock.now = 4000.0  # every message lies an hour and more ahead
    stop_after = clock.now + 1.0
    summary = run(_messages(10), mqtt_delivery(ListSink(clock)), real_time=True, clock=clock, wall_clock=clock,
                  sleep=clock.sleep, should_stop=lambda: clock.now >= stop_after)
    assert summary.messages == 0 and clock.now < 4002.0
