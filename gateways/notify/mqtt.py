"""The public MQTT feed as a channel: the queued payload, as JSON, published retained with QoS 1 to the row's
topic (``ioc/v1/{zone}/_warning``), confirmed by the broker before it counts as sent.

The payload carries the message's ``key``, so a subscriber that sees a repeat after a crash can drop it; being
retained, a late subscriber gets the newest warning of each zone. One connection is kept between messages.
"""

from __future__ import annotations

import json
from contextlib import suppress
from datetime import datetime
from pathlib import Path

from gateways.mqtt.errors import BrokerRefused, BrokerUnavailable
from gateways.mqtt.publisher import MqttPublisher
from gateways.notify.errors import DeliveryDeferred, DeliveryRefused
from gateways.notify.notice import Notice
from ioc_core.settings import MqttUrl

__all__ = ["MqttSender"]


class MqttSender:
    channel = "mqtt"

    def __init__(self, url: MqttUrl, *, client_id: str = "", ca_file: Path | None = None,
                 timeout_s: float = 10.0) -> None:
        self._url = url
        self._client_id = client_id
        self._ca_file = ca_file
        self._timeout_s = timeout_s
        self._publisher: MqttPublisher | None = None

    def send(self, notice: Notice, at: datetime) -> str:
        topic = notice.address
        if not topic or any(c in topic for c in "+#\0") or topic.startswith("$"):
            raise DeliveryRefused(f"{topic!r} is not a topic one may publish to")
        body = json.dumps(dict(notice.payload), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        try:
            publisher = self._connected()
            publisher.publish(topic, body, retain=True)
            publisher.flush(timeout=self._timeout_s)
        except BrokerRefused as err:
            self.close()
            raise DeliveryDeferred(f"broker {self._url} refused us: {err}") from err
        except BrokerUnavailable as err:
            self.close()
            raise DeliveryDeferred(f"broker {self._url}: {err}") from err
        return f"published retained to {topic} on {self._url}"

    def _connected(self) -> MqttPublisher:
        if self._publisher is None:
            publisher = MqttPublisher(self._url, self._client_id, qos=1, max_inflight=10, ca_file=self._ca_file,
                                      connect_timeout_s=self._timeout_s)
            self._publisher = publisher.__enter__()
        return self._publisher

    def close(self) -> None:
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            # Every send waited for its confirmation already; closing "after an error" skips the publisher's
            # own 60 s flush of anything a failed send left unconfirmed (that row stays pending and goes again).
            with suppress(BrokerUnavailable):
                publisher.__exit__(BrokerUnavailable, None, None)
