"""The open feed end to end: uplinks → ingest → database → feed → a subscriber on ``ioc/v1/#``.

A real broker, a real database and the ingest worker with its feed; subscribers are plain paho clients, as a
third-party developer's would be.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateways.local_mosquitto import LocalMosquitto
from gateways.mqtt import MqttBroadcaster, MqttPublisher
from ingest.codecs.library import CodecLibrary
from ingest.feed import FeedConfig, OpenFeed
from ingest.processor import BatchProcessor
from ingest.registry import DeviceRecord, register_devices, seed_zones
from ingest.worker import IngestWorker, WorkerConfig
from ioc_core.settings import MqttUrl
from ioc_core.zones import load_default_zones
from tests.events import uplink
from tests.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.both_modes]

EXAMPLE_SUBSCRIBER = Path(__file__).resolve().parents[2] / "docs" / "examples" / "subscriber.py"

HAI_CHAU = (16.0611, 108.2272)
SON_TRA = (16.10, 108.25)
PUBLIC = {"a000000000000001": HAI_CHAU, "a000000000000002": HAI_CHAU, "a000000000000003": SON_TRA}
PRIVATE = "b000000000000001"
UNREGISTERED = "c000000000000001"


def cayenne(temperature: float, humidity: float) -> bytes:
    """Cayenne LPP: temperature (0.1 °C) on channel 1, humidity (0.5 %RH) on channel 2."""
    return (bytes.fromhex("0167") + round(temperature * 10).to_bytes(2, "big", signed=True)
            + bytes.fromhex("0268") + bytes([round(humidity * 2)]))


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool


class Subscriber:
    """A developer's client on ``ioc/v1/#``; collects every message."""

    def __init__(self, broker: LocalMosquitto, topic: str = "ioc/v1/#") -> None:
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"dev-{time.monotonic_ns()}")
        self._client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", broker.port)
        self._client.loop_start()
        assert self._subscribed.wait(10)

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain)))

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.messages)

    def topics(self, part: str = "") -> dict[str, Received]:
        """The latest message of each topic containing ``part``, cleared topics left out."""
        latest: dict[str, Received] = {}
        for m in self.snapshot():
            if part in m.topic:
                latest[m.topic] = m
        return {t: m for t, m in latest.items() if m.payload}

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def _count(db_url: str, sql: str = "SELECT count(*) FROM uplinks") -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(sql).fetchone()
        return int(row[0]) if row else 0


@pytest.fixture
def registry(db_url: str) -> str:
    with psycopg.connect(db_url) as conn:
        seed_zones(conn, load_default_zones())
        records = [DeviceRecord(dev_eui=eui, name=f"Sensor {eui[-1]}", kind="temperature_humidity",
                                codec_id="cayenne-lpp", latitude=lat, longitude=lon)
                   for eui, (lat, lon) in PUBLIC.items()]
        records.append(DeviceRecord(dev_eui=PRIVATE, name="Private garden sensor", kind="temperature_humidity",
                                    codec_id="cayenne-lpp", latitude=HAI_CHAU[0], longitude=HAI_CHAU[1],
                                    tags={"owner": "a citizen"}))
        register_devices(conn, records)
        conn.execute("UPDATE devices SET public = false WHERE dev_eui = %s", (PRIVATE,))
        # Hourly sensors: readings from the start of this hour still count as reporting.
        conn.execute("UPDATE devices SET expected_interval_s = 3600")
        conn.commit()
    return db_url


class RunningWorker:
    def __init__(self, db_url: str, broker: LocalMosquitto, config: FeedConfig) -> None:
        url = MqttUrl.parse(broker.url)
        worker_config = WorkerConfig(name="feed-e2e", client_id="feed-e2e",
                                     topic_filter="application/+/device/+/event/+", share_group="ioc-ingest",
                                     batch_size=500, batch_age_s=0.05, receive_maximum=5000, session_expiry_s=600,
                                     stats_interval_s=5.0)
        self.feed = OpenFeed(db_url, MqttBroadcaster(url, client_id="feed-e2e-feed"), config)
        self.worker = IngestWorker(worker_config, url, BatchProcessor(db_url, CodecLibrary.discover()), self.feed)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.worker.run, args=(self.stop,), daemon=True)
        self.thread.start()
        assert self.worker.wait_ready(30)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


@pytest.fixture
def start_worker(broker: LocalMosquitto) -> Iterator[Callable[..., RunningWorker]]:
    made: list[RunningWorker] = []

    def start(db_url: str, **config: Any) -> RunningWorker:
        running = RunningWorker(db_url, broker, FeedConfig(**{"status_interval_s": 0.5, "check_s": 0.5, **config}))
        made.append(running)
        return running

    yield start
    for running in made:
        running.close()


def _publish(broker: LocalMosquitto, messages: list[tuple[str, bytes]]) -> None:
    with MqttPublisher(MqttUrl.parse(broker.url), client_id=f"e2e-pub-{time.monotonic_ns()}") as pub:
        for topic, payload in messages:
            pub.publish(topic, payload)


def _records(payload: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """(measurements by name, device description by name) of a SenML pack."""
    pack = json.loads(payload)
    measured = {r["n"]: r for r in pack if r["n"] in ("temperature", "humidity")}
    described = {r["n"]: r.get("vs", r.get("v")) for r in pack if r["n"] not in measured}
    return measured, described


def test_readings_of_public_devices_only_and_a_new_subscriber_gets_every_latest_one(
    registry: str, broker: LocalMosquitto, start_worker: Callable[..., RunningWorker]
) -> None:
    live = Subscriber(broker)
    running = start_worker(registry)
    # Every reading in the current hour, so the zone's key values come from one hourly bucket.
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    messages = []
    expected_latest: dict[str, tuple[float, float, float]] = {}
    for n in range(3):
        when = hour + timedelta(seconds=n)
        for i, eui in enumerate(PUBLIC):
            temperature, humidity = 20.0 + i + n, 60.0 + n
            messages.append(uplink(eui, n, cayenne(temperature, humidity), when=when,
                                   encoding="json" if n % 2 else "protobuf"))
            expected_latest[eui] = (when.timestamp(), temperature, humidity)
        messages.append(uplink(PRIVATE, n, cayenne(40.0, 90.0), when=when))
        messages.append(uplink(UNREGISTERED, n, cayenne(30.0, 50.0), when=when))
    # Humidity out of range (127.5 %RH): stored flagged, so the pack has temperature only.
    flagged_at = hour + timedelta(seconds=3)
    messages.append(uplink("a000000000000003", 3, cayenne(18.5, 127.5), when=flagged_at))
    expected_latest["a000000000000003"] = (flagged_at.timestamp(), 18.5, float("nan"))
    _publish(broker, messages)
    wait_for(lambda: _count(registry) == len(messages), timeout_s=30, what="every uplink stored")

    def readings() -> list[Received]:
        return [m for m in live.snapshot() if "/temperature_humidity/" in m.topic]

    wait_for(lambda: len(readings()) == 10, timeout_s=15, what="a pack for every stored reading of a public device")
    time.sleep(0.5)
    assert len(readings()) == 10  # 3 × 3 + 1, nothing for the private and the unregistered device
    for m in live.snapshot():
        assert PRIVATE not in m.topic and UNREGISTERED not in m.topic
        assert PRIVATE.encode() not in m.payload and b"a citizen" not in m.payload
    for m in readings():
        zone, kind, eui = m.topic.split("/")[2:]
        assert kind == "temperature_humidity" and eui in PUBLIC
        assert zone == ("son-tra" if eui == "a000000000000003" else "hai-chau")
        measured, described = _records(m.payload)
        assert json.loads(m.payload)[0]["bn"] == f"urn:dev:deveui:{eui}:"
        assert measured["temperature"]["u"] == "Cel"
        if "humidity" in measured:
            assert measured["humidity"]["u"] == "%RH"
        assert described == {"name": f"Sensor {eui[-1]}", "kind": "temperature_humidity", "zone": zone,
                             "zone_name": "Sơn Trà" if zone == "son-tra" else "Hải Châu",
                             "lat": PUBLIC[eui][0], "lon": PUBLIC[eui][1]}

    # A developer who connects now gets the latest reading of every public device at once.
    late = Subscriber(broker)
    wait_for(lambda: len(late.topics("/temperature_humidity/")) == len(PUBLIC),
             timeout_s=10, what="the retained readings")
    retained = late.topics("/temperature_humidity/")
    assert all(m.retain for m in retained.values())
    for topic, m in retained.items():
        eui = topic.rsplit("/", 1)[1]
        latest_at, temperature, humidity = expected_latest[eui]
        measured, _ = _records(m.payload)
        assert json.loads(m.payload)[0]["bt"] == latest_at
        assert measured["temperature"]["v"] == temperature
        if humidity == humidity:  # not NaN
            assert measured["humidity"]["v"] == humidity
        else:
            assert "humidity" not in measured  # the flagged value is left out

    # Status of every public device and a summary of every zone, from public devices only.
    def reporting() -> list[str]:
        return [t for t, m in late.topics("/_status/").items() if json.loads(m.payload)["health"] == "reporting"]

    wait_for(lambda: len(reporting()) == len(PUBLIC), timeout_s=10, what="every public device reporting")
    assert sorted(t.rsplit("/", 1)[1] for t in reporting()) == sorted(PUBLIC)
    wait_for(lambda: "ioc/v1/hai-chau/_summary" in late.topics("_summary"), timeout_s=10, what="the zone summaries")
    summaries = {t.split("/")[2]: json.loads(m.payload) for t, m in late.topics("/_summary").items()}
    assert len(summaries) == 7  # every current district
    hai_chau = summaries["hai-chau"]
    assert hai_chau["devices"] == {"reporting": 2, "late": 0, "silent": 0, "never_seen": 0, "total": 2}
    assert hai_chau["uplinks_last_hour"] == 6
    values = {kv["metric"]: kv for kv in hai_chau["key_values"]}
    assert set(values) == {"temperature", "humidity"}
    # The private sensor's 40 °C is not in the mean: only the two public devices' 20, 21, 22 and 21, 22, 23.
    assert values["temperature"]["value"] == pytest.approx(21.5) and values["temperature"]["samples"] == 6
    assert summaries["son-tra"]["devices"]["total"] == 1
    assert summaries["lien-chieu"]["devices"]["total"] == 0
    live.close()
    late.close()
    assert running.feed.published == 10 and running.feed.dropped == 0 and running.feed.refused == 0


def test_status_follows_a_device_going_late_silent_and_back(
    registry: str, broker: LocalMosquitto, start_worker: Callable[..., RunningWorker]
) -> None:
    eui = "a000000000000001"
    with psycopg.connect(registry) as conn:
        conn.execute("UPDATE devices SET expected_interval_s = 1 WHERE dev_eui = %s", (eui,))
    live = Subscriber(broker, f"ioc/v1/hai-chau/_status/{eui}")
    start_worker(registry)

    def events() -> list[str]:
        return [json.loads(m.payload)["event"] for m in live.snapshot() if m.payload]

    wait_for(lambda: events()[:1] == ["snapshot"], timeout_s=10, what="the start-up snapshot")
    assert json.loads(live.snapshot()[0].payload)["health"] == "never_seen"
    _publish(broker, [uplink(eui, 1, cayenne(25.0, 70.0))])
    # Interval 1 s: reporting at once, late after 2 s, silent after 6 s.
    wait_for(lambda: events()[-3:] == ["first_seen", "late", "silent"],
             timeout_s=20, what="first_seen, late and silent")
    _publish(broker, [uplink(eui, 2, cayenne(25.5, 70.0))])
    wait_for(lambda: events()[-1] == "back", timeout_s=10, what="back")
    last = json.loads(live.snapshot()[-1].payload)
    assert last["health"] == "reporting" and last["previous"] == "silent" and last["expected_interval_s"] == 1
    live.close()


def test_a_device_made_private_disappears_and_stale_retained_topics_are_cleared(
    registry: str, broker: LocalMosquitto, start_worker: Callable[..., RunningWorker]
) -> None:
    # Left behind by an earlier feed: a device that has since been decommissioned.
    stale = "ioc/v1/hai-chau/water_level/ffffffffffffffff"
    with MqttPublisher(MqttUrl.parse(broker.url), client_id="stale") as pub:
        pub.publish(stale, b'[{"bn":"urn:dev:deveui:ffffffffffffffff:","n":"water_level","u":"m","v":1}]', retain=True)
    eui = "a000000000000002"
    watcher = Subscriber(broker)
    wait_for(lambda: stale in watcher.topics(), timeout_s=5, what="the stale retained reading")
    start_worker(registry)
    _publish(broker, [uplink(e, 1, cayenne(21.0, 55.0)) for e in PUBLIC])
    wait_for(lambda: len(watcher.topics("/temperature_humidity/")) == 3 and len(watcher.topics("/_status/")) == 3,
             timeout_s=15, what="readings and status of the three public devices")
    wait_for(lambda: any(m.topic == stale and not m.payload for m in watcher.snapshot()),
             timeout_s=10, what="the stale retained reading to be cleared")
    with psycopg.connect(registry) as conn:
        conn.execute("UPDATE devices SET public = false, updated_at = now() WHERE dev_eui = %s", (eui,))
    wait_for(lambda: not any(eui in t for t in watcher.topics()),
             timeout_s=10, what="the private device's topics to be cleared")
    _publish(broker, [uplink(eui, 2, cayenne(22.0, 56.0))])
    wait_for(lambda: _count(registry) == 4, timeout_s=10, what="the new uplink stored")
    time.sleep(1.0)
    fresh = Subscriber(broker)
    time.sleep(1.0)
    assert not any(eui in m.topic for m in fresh.snapshot())
    assert stale not in fresh.topics()
    assert len(fresh.topics("/temperature_humidity/")) == 2
    watcher.close()
    fresh.close()


def test_the_example_subscriber_prints_the_retained_readings(broker: LocalMosquitto) -> None:
    from ingest.feed.asyncapi import example_payloads

    with MqttPublisher(MqttUrl.parse(broker.url), client_id="examples") as pub:
        for topic, payload in example_payloads().values():
            pub.publish(topic, json.dumps(payload).encode(), retain=True)
    done = subprocess.run([sys.executable, str(EXAMPLE_SUBSCRIBER), "--port", str(broker.port), "--count", "3"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    lines = sorted(done.stdout.splitlines())
    assert lines == sorted([
        "[retained] 2026-03-14T09:26:53+00:00 Cầu Rồng water level (water_level, Hải Châu): water_level=1.42 m, "
        "battery_voltage=3.61 V",
        "[retained] status Cầu Rồng water level (70b3d5e75e000a01): late [late]",
        "[retained] zone Hải Châu: 41/44 devices reporting, 512 uplinks in the last hour; max water_level 1.42 m, "
        "mean pm2_5 23.50 ug/m3",
    ])


@pytest.mark.parametrize(("env", "fragment"), [
    ({"IOC_FEED_URL": "http://broker:1883"}, "IOC_FEED_URL"),
    ({"IOC_FEED_PREFIX": "ioc/#"}, "IOC_FEED_PREFIX"),
])
def test_bad_feed_configuration_is_one_clear_line(env: dict[str, str], fragment: str) -> None:
    done = subprocess.run([sys.executable, "-m", "ioc_cli", "ingest"], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert fragment in done.stderr and "Traceback" not in done.stderr
