"""The MQTT broker adapter (paho-mqtt 2.x, MQTT 5); the next commit splits it into one module per concept."""

from gateways.mqtt.consumer import (
    BrokerRefused,
    BrokerUnavailable,
    InboundMessage,
    MqttBroadcaster,
    MqttConsumer,
    MqttPublisher,
    publish_packet,
)

__all__ = [
    "BrokerRefused",
    "BrokerUnavailable",
    "InboundMessage",
    "MqttBroadcaster",
    "MqttConsumer",
    "MqttPublisher",
    "publish_packet",
]
