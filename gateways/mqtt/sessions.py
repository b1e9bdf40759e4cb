"""Ending MQTT sessions on the public broker: how a revoked developer credential loses its parked session.

Mosquitto removes an account from its password file at a reload and drops the connection that uses it,
but a persistent session parked by that credential stays (and keeps queueing) until it expires. MQTT's own
rule ends it at once: a client that connects with the same client id and a clean start takes over the id,
the broker disconnects the holder and discards its session. On the developer listener the client id is the
username (``use_username_as_clientid``), so the API connects on the service listener, where the ``ioc-api``
account may pick a client id, as each revoked username, with a clean start and no session expiry.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateways.mqtt.connection import BrokerConnection
from gateways.mqtt.errors import BrokerUnavailable
from ioc_core.settings import MqttUrl

__all__ = ["end_sessions"]


def _take_over(url: MqttUrl, client_id: str, ca_file: Path | None, timeout_s: float) -> None:
    link = BrokerConnection(url, client_id=client_id, role=f"{url.username or 'anonymous'} (taking over {client_id})",
                            ca_file=ca_file)
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 0  # the session ends with this connection
    try:
        if not link.open(timeout_s=timeout_s, background=False, clean_start=True, properties=properties):
            raise BrokerUnavailable(f"the public broker at {url} did not answer within {timeout_s:.0f} s")
    finally:
        link.close()


def end_sessions(url: MqttUrl, client_ids: Iterable[str], *, ca_file: Path | None = None,
                 timeout_s: float = 5.0) -> list[str]:
    """Disconnect whoever uses each client id and discard its session; the ids ended, in order."""
    ended = []
    for client_id in client_ids:
        _take_over(url, client_id, ca_file, timeout_s)
        ended.append(client_id)
    return ended
