"""Test support for the operations end to end: the flood's water levels over time, the stations' uplinks on
their real codec's frame, a publisher that plays them in real time, the ``ioc`` services as child processes,
and a subscriber that connects late to read what the public broker kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from device_simulators.payloads import encode_water_level
from gateways.mqtt import MqttPublisher
from ioc_core.settings import MqttUrl
from tests.api_support import lpp
from tests.events import uplink
from tests.waiting import wait_for

__all__ = ["REPO", "FloodStation", "LateSubscriber", "Published", "Service", "TrafficPlan", "play",
           "station_uplink"]

REPO = Path(__file__).resolve().parents[1]
WATER_FPORT = 10  # ingest/codecs/builtin/ioc_water_level: the frame's port


@dataclass(frozen=True, slots=True)
class FloodStation:
    """A level station (``water_level``) or street sensor (``flood_depth``) whose reading steps up at the
    given seconds after the traffic starts: ``steps`` is ((from_s, value), ...) in rising order."""

    dev_eui: str
    metric: str
    steps: tuple[tuple[float, float], ...]

    def value_at(self, elapsed_s: float, f_cnt: int) -> float:
        value = self.steps[0][1]
        for start, level in self.steps:
            if elapsed_s >= start:
                value = level
        # A few millimetres of ripple: a real gauge never repeats one value for long (a flat line is an alarm
        # of its own, device_alarm_rules), and 4 mm moves no level across a threshold.
        return round(value + 0.001 * (f_cnt % 5), 3)


def station_uplink(station: FloodStation, f_cnt: int, elapsed_s: float) -> tuple[str, bytes]:
    """The station's uplink as ChirpStack publishes it (JSON), carrying the IOC water level frame on fPort 10."""
    frame = encode_water_level({station.metric: station.value_at(elapsed_s, f_cnt), "distance": 4.0,
                                "battery_voltage": 3.6})
    topic, payload = uplink(station.dev_eui, f_cnt, frame, codec="ioc-water-level", when=datetime.now(UTC))
    event = json.loads(payload)
    event["fPort"] = WATER_FPORT  # tests/events.py builds the Cayenne LPP port; this codec reads only its own
    return topic, json.dumps(event).encode()


@dataclass(frozen=True, slots=True)
class TrafficPlan:
    """Who sends when: each flood station every ``station_every_s``, each background sensor (Cayenne LPP
    temperature and humidity) every ``background_every_s``, for ``duration_s``."""

    stations: Sequence[FloodStation]
    background: Sequence[str]
    duration_s: float
    station_every_s: float = 1.0
    background_every_s: float = 0.25


class Published:
    """What the publisher sent: each uplink's deduplication id by device, and whether it has finished."""

    def __init__(self) -> None:
        self.by_device: dict[str, list[str]] = {}
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.error: BaseException | None = None

    def add(self, dev_eui: str, payload: bytes) -> None:
        with self.lock:
            self.by_device.setdefault(dev_eui, []).append(json.loads(payload)["deduplicationId"])

    def total(self) -> int:
        with self.lock:
            return sum(len(ids) for ids in self.by_device.values())

    def count(self, dev_eui: str) -> int:
        with self.lock:
            return len(self.by_device.get(dev_eui, []))


def play(url: str, plan: TrafficPlan, published: Published, started: float) -> threading.Thread:
    """Publish ``plan`` in real time from ``started`` (a ``time.monotonic()``) in a background thread."""
    schedule: list[tuple[float, int, str]] = []  # (at, order, dev_eui)
    for i, station in enumerate(plan.stations):
        schedule += [(k * plan.station_every_s + i * 0.01, 0, station.dev_eui)
                     for k in range(int(plan.duration_s / plan.station_every_s))]
    for i, eui in enumerate(plan.background):
        schedule += [(k * plan.background_every_s + i * 0.003, 1, eui)
                     for k in range(int(plan.duration_s / plan.background_every_s))]
    schedule.sort()
    stations = {s.dev_eui: s for s in plan.stations}

    def run() -> None:
        f_cnt: dict[str, int] = {}
        try:
            with MqttPublisher(MqttUrl.parse(url), client_id=f"flood-pub-{time.monotonic_ns()}") as pub:
                for at, _order, eui in schedule:
                    ahead = started + at - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
                    n = f_cnt[eui] = f_cnt.get(eui, -1) + 1
                    if eui in stations:
                        topic, payload = station_uplink(stations[eui], n, time.monotonic() - started)
                    else:
                        topic, payload = uplink(eui, n, lpp(24.0 + (n % 10) / 10, 70.0 + n % 5))
                    pub.publish(topic, payload)
                    published.add(eui, payload)
        except BaseException as err:  # reported by the test, which would otherwise wait for uplinks in vain
            published.error = err
        finally:
            published.done.set()

    thread = threading.Thread(target=run, name="flood-publisher", daemon=True)
    thread.start()
    return thread


class Service:
    """An ``ioc`` command run as a child process, the way an operator runs it, logging to a file."""

    def __init__(self, argv: Sequence[str], log_file: Path, env: dict[str, str]) -> None:
        self.argv = [sys.executable, "-m", "ioc_cli", *argv]
        self.log_file = log_file
        # The test's own IOC_ settings stay out: the child gets exactly what the test gives it.
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("IOC_")},
                    "PYTHONPATH": str(REPO), **env}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, *, ready: str | None = None, timeout_s: float = 60.0) -> None:
        """Start it; with ``ready``, wait until its log shows that text once more than before."""
        seen = self.log().count(ready) if ready else 0
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(self.argv, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1
        if ready:
            def up() -> bool:
                if self.proc is not None and self.proc.poll() is not None:
                    raise AssertionError(f"{' '.join(self.argv[2:])} exited: {self.log()[-3000:]}")
                return self.log().count(ready) > seen

            wait_for(up, timeout_s=timeout_s, what=lambda: f"{ready!r} in {self.log_file.name}: "
                                                           f"{self.log()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is acknowledged or flushed."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int | None:
        """SIGTERM and wait (SIGKILL past 30 s); its exit code, None if it was not running."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


class LateSubscriber:
    """Connects when asked, after the publish, and collects what the broker hands it on ``topics`` (retained
    messages included): a citizen's app opening the public feed."""

    def __init__(self, url: str, topics: Sequence[str]) -> None:
        parsed = MqttUrl.parse(url)
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"late-{time.monotonic_ns()}")
        self._topics = list(topics)
        self._client.on_connect = self._subscribe
        self._client.on_message = self._keep
        self._client.connect(parsed.host, parsed.port)
        self._client.loop_start()

    def _subscribe(self, client: paho.Client, *_: Any) -> None:
        for topic in self._topics:
            client.subscribe(topic, qos=1)

    def _keep(self, _client: paho.Client, _userdata: object, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def received(self) -> list[tuple[str, bytes, bool]]:
        with self._lock:
            return list(self.messages)

    def wait(self, check: Callable[[list[tuple[str, bytes, bool]]], bool], timeout_s: float) -> None:
        wait_for(lambda: check(self.received()), timeout_s=timeout_s,
                 what=lambda: f"retained messages; got {[(t, r) for t, _p, r in self.received()]}")

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()
