"""Connecting to the broker, written once for every client: set-up from the URL, the CONNACK's verdict, the wait.

A CONNACK is accepted, refused for good (credentials, authorisation, client id: retrying cannot help, so
``open`` raises ``BrokerRefused``) or refused for now (the broker is busy: paho tries again). No answer within
the wait is not a refusal: a consumer keeps trying in the background, a caller that needs the broker at once
gets ``BrokerUnavailable``.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateways.mqtt.errors import BrokerRefused, BrokerUnavailable
from gateways.mqtt.lean_client import LeanClient
from ioc_core.settings import MqttUrl

__all__ = ["BrokerConnection", "refusal"]

log = logging.getLogger(__name__)

# Unsupported protocol version, client id not valid, bad user name or password, not authorised, bad
# authentication method.
_FOR_GOOD = frozenset({0x84, 0x85, 0x86, 0x87, 0x8C})


def refusal(reason: ReasonCode) -> str | None:
    """A CONNACK reason that retrying cannot fix, as text; None for success or transient failures."""
    if reason.is_failure and reason.value in _FOR_GOOD:
        return str(reason)
    return None


class BrokerConnection:
    """One paho client (a ``LeanClient``) and what its CONNACKs said, for a consumer, publisher or broadcaster.

    ``role`` names the client in messages ("consumer ioc-ingest-1"). ``on_accepted`` runs on paho's network
    thread after every accepted CONNACK, before ``connected`` is set (the place to subscribe, so that
    subscriptions come back after a reconnect); ``on_lost`` runs after every disconnection.
    """

    def __init__(
        self,
        url: MqttUrl,
        *,
        client_id: str,
        role: str,
        ca_file: Path | None = None,
        mqtt5: bool = True,
        on_accepted: Callable[[], None] | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.url = url
        self.role = role
        client = LeanClient(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5 if mqtt5 else paho.MQTTv311,
        )
        if url.username:
            client.username_pw_set(url.username, url.password.get_secret_value() if url.password else None)
        if url.tls:
            client.tls_set(ca_certs=str(ca_file) if ca_file else None, cert_reqs=ssl.CERT_REQUIRED)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self.client = client
        self.connected = threading.Event()
        # Set from paho's thread when the broker refuses for good (or a caller finds a refusal, as a refused
        # subscription); ``open`` raises it.
        self.refused: str | None = None
        self._on_accepted = on_accepted
        self._on_lost = on_lost

    # paho callbacks run on paho's network thread.
    def _on_connect(self, _client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any) -> None:
        if reason.is_failure:
            self.refused = refusal(reason)
            if self.refused is None:
                log.warning("broker %s refused %s for now: %s", self.url, self.role, reason)
            return
        log.info("%s connected to %s", self.role, self.url)
        if self._on_accepted is not None:
            self._on_accepted()
        self.connected.set()

    def _on_disconnect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        self.connected.clear()
        if self._on_lost is not None:
            self._on_lost()
        if reason.is_failure:
            log.warning("%s lost the broker %s: %s; paho reconnects", self.role, self.url, reason)

    def open(
        self,
        *,
        timeout_s: float,
        until: threading.Event | None = None,
        background: bool = True,
        clean_start: bool | Literal[3] = paho.MQTT_CLEAN_START_FIRST_ONLY,
        properties: Properties | None = None,
    ) -> bool:
        """Connect, start paho's network thread and wait up to ``timeout_s`` for ``until`` (default: connected).

        True once it is set; False when the time ran out (paho goes on trying). A refusal for good closes the
        connection and raises ``BrokerRefused``. ``background=False`` connects the socket in the caller's
        thread, so an unreachable broker raises ``BrokerUnavailable`` at once instead of being retried.
        """
        url = self.url
        if background:
            self.client.connect_async(url.host, url.port, keepalive=30, clean_start=clean_start,
                                      properties=properties)
        else:
            try:
                self.client.connect(url.host, url.port, keepalive=30, clean_start=clean_start,
                                    properties=properties)
            except OSError as err:
                raise BrokerUnavailable(f"cannot reach the broker at {url}: {err}") from err
        self.client.loop_start()
        ready = until or self.connected
        deadline = time.monotonic() + timeout_s
        while not ready.wait(0.05) and not self.refused:
            if time.monotonic() > deadline:
                return False
        if self.refused:
            self.close()
            raise BrokerRefused(f"broker {url} refused {self.role}: {self.refused}")
        return True

    def close(self) -> None:
        """Disconnect and stop paho's network thread."""
        self.client.disconnect()
        self.client.loop_stop()
