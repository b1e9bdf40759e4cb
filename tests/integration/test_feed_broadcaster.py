"""The feed's MQTT publisher against a real Mosquitto: raw QoS 0 batches arrive intact, nothing blocks."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateways.local_mosquitto import LocalMosquitto, find_mosquitto
from gateways.local_postgres import free_port
from gateways.mqtt import BrokerRefused, MqttBroadcaster
from ioc_core.settings import MqttUrl
from tests.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.both_modes]


class _Sub:
    def __init__(self, port: int, topic: str = "feed/#", *, v5: bool = False) -> None:
        self.got: list[tuple[str, bytes, bool]] = []
        self._ready = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5 if v5 else paho.MQTTv311)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._ready.wait(10)

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        self.got.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def wait(self, n: int, timeout: float = 10.0) -> None:
        eventually(lambda: len(self.got) >= n, timeout_s=timeout)  # the test asserts on what came

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.parametrize("mqtt5", [False, True], ids=["mqtt311", "mqtt5"])
def test_a_batch_of_raw_packets_arrives_in_order_and_intact(broker: LocalMosquitto, mqtt5: bool) -> None:
    sub = _Sub(broker.port)
    feed = MqttBroadcaster(MqttUrl.parse(broker.url), client_id="feed-test", mqtt5=mqtt5)
    assert feed.start()
    try:
        # Several 256 KiB chunks, payloads from empty to 200 kB, unicode topics.
        messages = [(f"feed/zone-{i % 7}/đo/{i:05d}", bytes([i % 256]) * ((i * 37) % 2000), False)
                    for i in range(3000)]
        messages.append(("feed/big", b"x" * 200_000, False))
        assert feed.publish_many(messages) == len(messages)
        sub.wait(len(messages))
        assert sub.got == [(t, p, False) for t, p, _r in messages]
    finally:
        feed.stop()
        sub.close()


def test_retained_messages_reach_a_later_subscriber_and_empty_ones_clear_them(broker: LocalMosquitto) -> None:
    feed = MqttBroadcaster(MqttUrl.parse(broker.url), client_id="feed-test")
    assert feed.start()
    try:
        assert feed.publish_many([("feed/a", b"1", True), ("feed/b", b"2", True), ("feed/c", b"3", True)]) == 3
        assert feed.publish("feed/d", b"4", retain=True, qos=1)
        assert feed.flush(5)
        time.sleep(0.2)
        assert feed.retained_topics("feed/#", quiet_s=0.3) == {"feed/a", "feed/b", "feed/c", "feed/d"}
        assert feed.publish_many([("feed/b", b"", True)], qos=1) == 1
        assert feed.flush(5)
        later = _Sub(broker.port)
        later.wait(3)
        time.sleep(0.3)
        assert sorted(later.got) == [("feed/a", b"1", True), ("feed/c", b"3", True), ("feed/d", b"4", True)]
        later.close()
    finally:
        feed.stop()


def test_nothing_blocks_while_the_broker_is_away_and_publishing_resumes_after(tmp_path: Any) -> None:
    server = LocalMosquitto(tmp_path / "mqtt")
    server.start()
    feed = MqttBroadcaster(MqttUrl.parse(server.url), client_id="feed-test")
    try:
        assert feed.start()
        server.stop()
        eventually(lambda: not feed.connected, timeout_s=5)
        started = time.monotonic()
        assert feed.publish_many([("feed/x", b"1", True)] * 1000) == 0
        assert not feed.publish("feed/y", b"1", retain=True)
        assert time.monotonic() - started < 0.5
        server.start()
        eventually(lambda: feed.connected, timeout_s=10)
        assert feed.connected
        sub = _Sub(server.port)
        assert feed.publish_many([("feed/x", b"2", True)]) == 1
        sub.wait(1)
        assert sub.got == [("feed/x", b"2", False)]
        sub.close()
    finally:
        feed.stop()
        server.stop()


def test_an_absent_broker_is_not_fatal_at_start_up() -> None:
    feed = MqttBroadcaster(MqttUrl.parse("mqtt://127.0.0.1:9"), client_id="feed-test")
    try:
        assert feed.start(wait_s=0.5) is False
        assert feed.publish_many([("feed/x", b"1", True)]) == 0
    finally:
        feed.stop()


def test_a_refusal_is_fatal(tmp_path: Any) -> None:
    port = free_port()
    conf = tmp_path / "closed.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous false\n")
    proc = subprocess.Popen([str(find_mosquitto()), "-c", str(conf)], stderr=subprocess.DEVNULL)
    try:

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            except OSError:
                return False
            return True

        eventually(listening, timeout_s=10)
        with pytest.raises(BrokerRefused):
            MqttBroadcaster(MqttUrl.parse(f"mqtt://127.0.0.1:{port}"), client_id="feed-test").start(wait_s=5)
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_burst_of_qos1_messages_does_not_hold_up_readings(broker: LocalMosquitto) -> None:
    """Every device changing health at once queues thousands of small QoS 1 messages; readings still go."""
    sub = _Sub(broker.port, "feed/reading/#")
    feed = MqttBroadcaster(MqttUrl.parse(broker.url), client_id="feed-test")
    assert feed.start()
    try:
        status = [(f"feed/status/{i:05d}", b'{"health":"reporting"}', True) for i in range(5000)]
        assert feed.publish_many(status, qos=1) == 5000
        readings = [(f"feed/reading/{i:05d}", b"[1]", True) for i in range(2000)]
        assert feed.publish_many(readings) == 2000
        sub.wait(2000)
        assert len(sub.got) == 2000
        assert feed.flush(10)
    finally:
        feed.stop()
        sub.close()
