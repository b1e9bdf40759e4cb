"""The open feed's side of the broker: a broadcaster that never blocks its caller, and asks what is retained."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateways.mqtt.connection import BrokerConnection
from gateways.mqtt.packets import remaining_length, topic_field
from ioc_core.settings import MqttUrl

__all__ = ["MqttBroadcaster"]

log = logging.getLogger(__name__)

# A chunk of packets handed to paho as one write; small enough that paho's slicing after a partial send stays cheap.
_CHUNK_BYTES = 256 * 1024


class MqttBroadcaster:
    """A publisher that never blocks its caller, for the open feed's many small retained messages.

    ``publish_many`` turns a list of messages into QoS 0 PUBLISH packets and hands them to paho in a few
    writes: paho's own path costs a message object, locks, a wake-up write and a send per message, which is
    more than the ingest spends on an uplink. QoS 1 messages (``publish``, or ``publish_many(qos=1)``) take
    paho's path, for the few that must survive a reconnect. While the broker is away, or more than
    ``max_pending_bytes`` wait for the socket (or ``window`` QoS 1 messages for their PUBACK), messages are
    refused and the caller counts them: memory stays bounded and nothing waits on the broker. paho
    reconnects on its own. MQTT 5 by default, so that listing retained topics can ask the broker for "no
    local": the feed's own live messages are not sent back to it.
    """

    def __init__(
        self,
        url: MqttUrl,
        *,
        client_id: str,
        ca_file: Path | None = None,
        mqtt5: bool = True,
        max_pending_bytes: int = 16 * 1024 * 1024,
        window: int = 10_000,
    ) -> None:
        self._url = url
        self._mqtt5 = mqtt5
        self._link = BrokerConnection(url, client_id=client_id, role=f"feed publisher {client_id}", ca_file=ca_file,
                                      mqtt5=mqtt5)
        self._connected = self._link.connected
        self._client = self._link.client
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(window)
        self._max_pending_bytes = max_pending_bytes
        self._topic_fields: dict[str, bytes] = {}
        self._subscribed = threading.Event()
        self._sub_refused = False
        self._retained: set[str] = set()
        self._last_retained = 0.0
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def _on_subscribe(
        self, _client: paho.Client, _userdata: Any, _mid: int, reasons: list[ReasonCode], _props: Any
    ) -> None:
        self._sub_refused = any(r.is_failure for r in reasons)
        self._subscribed.set()

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        if msg.retain:
            self._retained.add(msg.topic)
            self._last_retained = time.monotonic()

    def start(self, *, wait_s: float = 10.0) -> bool:
        """Connect in the background; True once connected. A refusal is fatal, an absent broker is not."""
        if self._link.open(timeout_s=wait_s):
            return True
        log.warning("broker %s not reachable after %.0f s; the feed publisher keeps trying", self._url, wait_s)
        return False

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def pending(self) -> int:
        """Writes handed to paho and not yet on the socket, plus QoS 1 messages not yet confirmed."""
        return self._client.pending

    def publish_many(self, messages: list[tuple[str, bytes, bool]], *, qos: int = 0) -> int:
        """Publish ``(topic, payload, retain)`` messages; returns how many were taken (all or none at QoS 0)."""
        if not messages or not self._connected.is_set() or self._client.backed_up(self._max_pending_bytes):
            return 0
        if qos:
            taken = 0
            for topic, payload, retain in messages:
                if not self.publish(topic, payload, retain=retain, qos=qos):
                    break
                taken += 1
            return taken
        # publish_packet, unrolled: this loop runs for every reading the feed publishes.
        fields = self._topic_fields
        chunk: list[bytes] = []
        size = 0
        for topic, payload, retain in messages:
            field = fields.get(topic)
            if field is None:
                field = topic_field(topic, self._mqtt5)
                if len(fields) < 200_000:
                    fields[topic] = field
            n = len(field) + len(payload)
            length = (bytes((n,)) if n < 128 else bytes((n & 0x7F | 0x80, n >> 7)) if n < 16_384
                      else remaining_length(n))
            chunk += (b"\x31" if retain else b"\x30", length, field, payload)
            size += n
            if size >= _CHUNK_BYTES:
                self._client.write_raw(b"".join(chunk))
                chunk, size = [], 0
        if chunk:
            self._client.write_raw(b"".join(chunk))
        return len(messages)

    def publish(self, topic: str, payload: bytes, *, retain: bool, qos: int = 1) -> bool:
        """One message through paho's own path; False when refused (broker away, window full)."""
        if not self._connected.is_set():
            return False
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        return bool(info.rc == paho.MQTT_ERR_SUCCESS)

    def retained_topics(self, topic_filter: str, *, quiet_s: float = 1.0, timeout_s: float = 30.0) -> set[str] | None:
        """Topics under ``topic_filter`` that hold a retained message; None when the broker will not say.

        Subscribes, collects what the broker sends as retained until nothing came for ``quiet_s``, unsubscribes.
        """
        if not self._connected.is_set():
            return None
        self._retained = set()
        self._subscribed.clear()
        self._last_retained = time.monotonic()
        if self._mqtt5:
            options = SubscribeOptions(qos=0, noLocal=True)
            result, _mid = self._client.subscribe(topic_filter, options=options)
        else:
            result, _mid = self._client.subscribe(topic_filter, qos=0)
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS or not self._subscribed.wait(min(timeout_s, 10.0)):
            return None
        try:
            if self._sub_refused:
                return None
            deadline = time.monotonic() + timeout_s
            while time.monotonic() - self._last_retained < quiet_s:
                if time.monotonic() > deadline:
                    return None
                time.sleep(0.05)
            return set(self._retained)
        finally:
            self._client.unsubscribe(topic_filter)

    def flush(self, timeout: float) -> bool:
        """Wait until every write has reached the socket and every QoS 1 message is confirmed."""
        deadline = time.monotonic() + timeout
        while self.pending:
            if time.monotonic() > deadline or not self._connected.is_set():
                return False
            time.sleep(0.01)
        return True

    def stop(self, *, flush_s: float = 5.0) -> None:
        if self._connected.is_set():
            self.flush(flush_s)
        self._link.close()
