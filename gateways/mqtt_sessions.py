"""Ending MQTT sessions on the public broker: how a revoked developer credential loses its parked session.

Mosquitto removes an account from its password file at a reload and drops the connection that uses it,
but a persistent session parked by that credential stays (and keeps queueing) until it expires. MQTT's own
rule ends it at once: a client that connects with the same client id and a clean start takes over the id,
the broker disconnects the holder and discards its session. On the developer listener the client id is the
username (``use_username_as_clientid``), so the API connects on the service listener, where the ``ioc-api``
account may pick a client id, as each revoked username, with a clean start and no session expiry.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateways.mqtt import BrokerRefused, BrokerUnavailable
from ioc_core.settings import MqttUrl

__all__ = ["end_sessions"]


def _take_over(url: MqttUrl, client_id: str, ca_file: Path | None, timeout_s: float) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    if url.username:
        client.username_pw_set(url.username, url.password.get_secret_value() if url.password else None)
    if url.tls:
        client.tls_set(ca_certs=str(ca_file) if ca_file else None)
    answered = threading.Event()
    outcome: dict[str, Any] = {}

    def on_connect(_c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        outcome["reason"] = reason
        answered.set()

    client.on_connect = on_connect
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 0  # the session ends with this connection
    try:
        client.connect(url.host, url.port, keepalive=30, clean_start=True, properties=properties)
    except OSError as err:
        raise BrokerUnavailable(f"cannot reach the public broker at {url}: {err}") from err
    client.loop_start()
    try:
        if not answered.wait(timeout_s):
            raise BrokerUnavailable(f"the public broker at {url} did not answer within {timeout_s:.0f} s")
        reason = outcome["reason"]
        if reason.is_failure:
            raise BrokerRefused(f"the public broker at {url} refused {url.username or 'anonymous'}: {reason}")
    finally:
        client.disconnect()
        client.loop_stop()


def end_sessions(url: MqttUrl, client_ids: Iterable[str], *, ca_file: Path | None = None,
                 timeout_s: float = 5.0) -> list[str]:
    """Disconnect whoever uses each client id and discard its session; the ids ended, in order."""
    ended = []
    for client_id in client_ids:
        _take_over(url, client_id, ca_file, timeout_s)
        ended.append(client_id)
    return ended
