"""The MQTT adapter against a real Mosquitto: the lean PUBLISH path must deliver exactly what was sent."""

from __future__ import annotations

import time

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateways.local_mosquitto import LocalMosquitto
from gateways.mqtt import InboundMessage, MqttConsumer, MqttPublisher
from ioc_core.settings import MqttUrl
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


def _collect(broker: LocalMosquitto, got: list[InboundMessage]) -> MqttConsumer:
    consumer = MqttConsumer(MqttUrl.parse(broker.url), client_id="t-consumer", topic_filter="application/#",
                            share_group="g", on_message=got.append)
    consumer.start()
    return consumer


def _wait(got: list[InboundMessage], n: int) -> None:
    wait_for(lambda: len(got) >= n, timeout_s=10, what=lambda: f"{n} messages; {len(got)} came", interval_s=0.02)


def test_payload_topic_and_ids_survive_properties_and_big_payloads(broker: LocalMosquitto) -> None:
    got: list[InboundMessage] = []
    consumer = _collect(broker, got)
    try:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="t-pub", protocol=paho.MQTTv5)
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.UserProperty = [("source", "chirpstack"), ("x" * 200, "y" * 300)]
        props.ContentType = "application/json"
        sent = [
            ("application/a/device/0102030405060708/event/up", b'{"a": 1}', props),
            ("application/đà-nẵng/device/0102030405060708/event/up", bytes(range(256)) * 300, None),
            ("application/a/device/0102030405060708/event/status", b"", None),
        ]
        for topic, payload, properties in sent:
            client.publish(topic, payload, qos=1, properties=properties).wait_for_publish(5)
        client.loop_stop()
        client.disconnect()
        _wait(got, 3)
        assert [(m.topic, m.payload) for m in got] == [(t, p) for t, p, _ in sent]
        assert len({m.mid for m in got}) == 3 and not any(m.duplicate for m in got)
        assert consumer.ack(got) == 3
    finally:
        consumer.stop()


def test_unacked_messages_come_back_on_the_next_session(broker: LocalMosquitto) -> None:
    got: list[InboundMessage] = []
    consumer = _collect(broker, got)
    with MqttPublisher(MqttUrl.parse(broker.url), client_id="t-pub2") as publisher:
        for i in range(20):
            publisher.publish(f"application/a/device/{i:016x}/event/up", f"m{i}".encode())
    _wait(got, 20)
    consumer.ack(got[:10])
    time.sleep(0.3)
    consumer.stop()
    again: list[InboundMessage] = []
    consumer = _collect(broker, again)
    try:
        _wait(again, 10)
        time.sleep(0.3)
        assert sorted(m.payload for m in again) == sorted(m.payload for m in got[10:])
        assert all(m.duplicate for m in again)
        # An ack for a message of the old connection is not sent: its packet id means nothing now.
        assert consumer.ack(got[10:]) == 0
        assert consumer.ack(again) == 10
    finally:
        consumer.stop()
