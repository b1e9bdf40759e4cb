"""The MQTT broker adapter (paho-mqtt 2.x, MQTT 5): the package's public surface, re-exported from its modules.

- ``errors``: ``BrokerUnavailable`` (retriable) and ``BrokerRefused`` (fatal).
- ``connection``: connecting, written once: the client's set-up, the CONNACK's verdict, the wait at start-up.
- ``lean_client``: paho's client with lean read, ack and raw-write paths; the only module that touches paho's
  private internals (it names the paho versions it was checked against).
- ``consumer``: ``InboundMessage`` and ``MqttConsumer``, the ingest's shared subscription with manual acks.
- ``publisher``: ``MqttPublisher``, QoS 1 with a window, for the simulator and load tools.
- ``broadcaster``: ``MqttBroadcaster``, the open feed's publisher that never blocks.
- ``packets``: hand-encoded QoS 0 PUBLISH packets (``publish_packet``).
- ``sessions``: ``end_sessions``, taking over a revoked credential's client id on the public broker.
"""

from gateways.mqtt.broadcaster import MqttBroadcaster
from gateways.mqtt.consumer import InboundMessage, MqttConsumer
from gateways.mqtt.errors import BrokerRefused, BrokerUnavailable
from gateways.mqtt.packets import publish_packet
from gateways.mqtt.publisher import MqttPublisher
from gateways.mqtt.sessions import end_sessions

__all__ = [
    "BrokerRefused",
    "BrokerUnavailable",
    "InboundMessage",
    "MqttBroadcaster",
    "MqttConsumer",
    "MqttPublisher",
    "end_sessions",
    "publish_packet",
]
