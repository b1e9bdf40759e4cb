"""A QoS 1 publisher for the simulator and the load tools: ``publish`` blocks while its window is full."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.reasoncodes import ReasonCode

from gateways.mqtt.connection import BrokerConnection
from gateways.mqtt.errors import BrokerUnavailable
from ioc_core.settings import MqttUrl

__all__ = ["MqttPublisher"]


class MqttPublisher:
    """A QoS 1 publisher that blocks when too many messages are unconfirmed, so callers cannot outrun it.

    While the broker is away paho keeps unconfirmed messages and sends them again after reconnecting;
    ``publish`` then blocks once the window is full instead of growing memory.
    """

    def __init__(
        self,
        url: MqttUrl,
        client_id: str | None = None,
        qos: int = 1,
        *,
        max_inflight: int = 1000,
        ca_file: Path | None = None,
        connect_timeout_s: float = 10.0,
        mqtt5: bool = True,
    ) -> None:
        self._url = url
        self._qos = qos
        self._window = max_inflight
        # MQTT 3.1.1 is an option for load generators: paho parses MQTT 5 properties on every PUBACK.
        self._link = BrokerConnection(url, client_id=client_id or "", role=f"publisher {client_id or ''}".rstrip(),
                                      ca_file=ca_file, mqtt5=mqtt5)
        self._client = self._link.client
        self._client.max_inflight_messages_set(max_inflight)
        self._connect_timeout_s = connect_timeout_s
        self._unconfirmed: set[int] = set()
        self._early: set[int] = set()
        self._confirmed = threading.Condition()
        self._client.on_publish = self._on_publish
        self.published = 0

    def _on_publish(
        self, _client: paho.Client, _userdata: Any, mid: int, _reason: ReasonCode, _props: Any
    ) -> None:
        with self._confirmed:
            if mid in self._unconfirmed:
                self._unconfirmed.discard(mid)
                self._confirmed.notify_all()
            else:
                # Confirmed before ``publish`` registered it.
                self._early.add(mid)

    def __enter__(self) -> MqttPublisher:
        """Connect; an unreachable or silent broker raises ``BrokerUnavailable``, a refusal ``BrokerRefused``."""
        if not self._link.open(timeout_s=self._connect_timeout_s, background=False):
            self._link.close()
            raise BrokerUnavailable(
                f"broker {self._url} did not accept the publisher within {self._connect_timeout_s:.0f} s (no CONNACK)"
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self.flush(timeout=60.0)
        finally:
            self._link.close()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        if self._qos > 0:
            with self._confirmed:
                while len(self._unconfirmed) >= self._window:
                    self._confirmed.wait(1.0)
        # Not under our lock: paho calls on_publish while holding its own message lock.
        info = self._client.publish(topic, payload, qos=self._qos, retain=retain)
        # NO_CONN means queued: paho sends it after reconnecting.
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            raise BrokerUnavailable(f"publish to {topic} failed: {paho.error_string(info.rc)}")
        if self._qos > 0:
            with self._confirmed:
                if info.mid in self._early:
                    self._early.discard(info.mid)
                else:
                    self._unconfirmed.add(info.mid)
        self.published += 1

    def flush(self, timeout: float) -> None:
        """Wait until every message published so far is confirmed by the broker."""
        deadline = time.monotonic() + timeout
        with self._confirmed:
            while self._unconfirmed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BrokerUnavailable(
                        f"{len(self._unconfirmed)} messages unconfirmed after {timeout:.0f} s"
                    )
                self._confirmed.wait(min(remaining, 1.0))
