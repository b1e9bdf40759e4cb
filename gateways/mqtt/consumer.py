"""The ingest's side of the broker: a persistent-session, shared-subscription consumer with manual acks."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateways.mqtt.connection import BrokerConnection
from ioc_core.settings import MqttUrl

__all__ = ["InboundMessage", "MqttConsumer"]

log = logging.getLogger(__name__)

# Connection numbers unique in the process, so no consumer can ack a packet id of another connection.
_SESSIONS = itertools.count(1)


class InboundMessage(NamedTuple):  # a tuple: created per message, and cheaper than a frozen dataclass
    """One PUBLISH as it arrived, before any parsing.

    ``session`` numbers the connection it came on: a packet id is only meaningful on its own connection,
    so an ack for an older connection must not be sent (the broker redelivers those messages instead).
    ``original_size`` is non-zero when the payload was larger than the consumer's ``max_payload``: then
    ``payload`` holds only its first bytes, so one huge message cannot hold the worker's memory.
    """

    topic: str
    payload: bytes
    mid: int
    received_at: float
    session: int
    duplicate: bool
    original_size: int = 0


class MqttConsumer:
    """A persistent-session, shared-subscription consumer that acknowledges only when told to.

    QoS 1 with manual acks gives at-least-once delivery: a message is acked after its batch is committed.
    The MQTT 5 *Receive Maximum* caps how many unacked messages the broker sends us, which is the
    backpressure: when the database stalls and acks stop, the broker stops sending and memory stays bounded.
    """

    def __init__(
        self,
        url: MqttUrl,
        *,
        client_id: str,
        topic_filter: str,
        on_message: Callable[[InboundMessage], None],
        share_group: str | None = None,
        receive_maximum: int = 20_000,
        session_expiry_s: int = 7 * 24 * 3600,
        ca_file: Path | None = None,
        max_payload: int | None = None,
        keep_payload: int = 4096,
    ) -> None:
        self._url = url
        self._topic = f"$share/{share_group}/{topic_filter}" if share_group else topic_filter
        self._max_payload = max_payload
        self._keep_payload = keep_payload
        self._sink = on_message
        self._receive_maximum = receive_maximum
        self._session_expiry_s = session_expiry_s
        self._link = BrokerConnection(url, client_id=client_id, role=f"consumer {client_id}", ca_file=ca_file,
                                      on_accepted=self._on_accepted, on_lost=self._on_lost)
        self._client = self._link.client
        self._client.manual_ack_set(True)
        self._client.on_message = self._on_message
        self._client.raw_sink = self._on_raw
        self._client.on_subscribe = self._on_subscribe
        # Guards ``_session``: an ack is sent only while the session it belongs to is still the live one.
        self._lock = threading.Lock()
        self._session = -1
        self._subscribed = threading.Event()
        # Messages handed to us so far, acked or not; with acks withheld it cannot pass Receive Maximum.
        self.delivered = 0

    # paho callbacks run on paho's network thread.
    def _on_accepted(self) -> None:
        with self._lock:
            self._session = next(_SESSIONS)
        log.info("session %d with %s, subscribing to %s", self._session, self._url, self._topic)
        # Subscribing here, not once after connect, brings the subscription back after any reconnect.
        self._client.subscribe(self._topic, qos=1)

    def _on_subscribe(
        self, _client: paho.Client, _userdata: Any, _mid: int, reasons: list[ReasonCode], _props: Any
    ) -> None:
        failed = [r for r in reasons if r.is_failure]
        if failed:
            self._link.refused = f"subscription to {self._topic} refused: {failed[0]}"
        self._subscribed.set()

    def _on_lost(self) -> None:
        with self._lock:
            self._session = next(_SESSIONS)
        self._subscribed.clear()

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        self._on_raw(msg.topic, bytes(msg.payload), msg.mid, bool(msg.dup))

    def _on_raw(self, topic: str, payload: bytes, mid: int, duplicate: bool) -> None:
        self.delivered += 1
        limit = self._max_payload
        if limit is not None and len(payload) > limit:
            # Cut here, on paho's thread: the batch then holds a few KiB of this message, not all of it.
            self._sink(InboundMessage(topic, payload[: self._keep_payload], mid, time.time(), self._session,
                                      duplicate, len(payload)))
            return
        self._sink(InboundMessage(topic, payload, mid, time.time(), self._session, duplicate))

    def start(self, *, wait_s: float = 10.0) -> None:
        """Connect in the background and wait for the subscription; refusals are fatal, absence is not."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._session_expiry_s
        props.ReceiveMaximum = self._receive_maximum
        if not self._link.open(timeout_s=wait_s, until=self._subscribed, clean_start=False, properties=props):
            log.warning("broker %s not reachable after %.0f s; still trying", self._url, wait_s)

    def ack(self, messages: list[InboundMessage]) -> int:
        """Acknowledge messages of the live session; returns how many were acked.

        Messages from an earlier connection are skipped: the broker will deliver them again, and the
        idempotent write drops the repeat.
        """
        with self._lock:
            session = self._session
            mids = [m.mid for m in messages if m.session == session]
            self._client.ack_many(mids)
        return len(mids)

    @property
    def connected(self) -> bool:
        return self._client.is_connected()

    def wait_subscribed(self, timeout: float) -> bool:
        """True once the broker has acknowledged the subscription (from then on nothing is missed)."""
        return self._subscribed.wait(timeout)

    def stop(self) -> None:
        self._link.close()
