"""ChirpStack v4, as this platform meets it: the MQTT integration events and the gRPC API.

The event contract is the public surface of this package, imported from here::

    events        the structs both encodings are parsed into (UplinkEvent, StatusEvent, …), EventParseError
    event_types   the one table of event types: EVENT_SPECS (name → struct, protobuf message, converter),
                  with its views EVENT_TYPES, EVENT_MESSAGES and EVENT_TYPE_OF
    topics        parse_topic / topic_for: application/{id}/device/{dev_eui}/event/{type}
    parser        parse_event: either encoding, parsed once and strictly at the edge; clean_text
    protobuf      binary protobuf messages into the structs (used through the table)
    wire          render / render_json: events as the exact bytes ChirpStack publishes, and its scalar formats

The gRPC adapter is imported from its own module, ``gateways.chirpstack.api`` (ChirpStackClient, DeviceSpec,
its errors), so that the ingest path does not load grpc.
"""

from gateways.chirpstack.event_types import (
    EVENT_MESSAGES,
    EVENT_SPECS,
    EVENT_TYPE_OF,
    EVENT_TYPES,
    EventSpec,
    EventType,
)
from gateways.chirpstack.events import (
    AckEvent,
    DeviceInfo,
    Event,
    EventParseError,
    JoinEvent,
    Location,
    LocationEvent,
    LogEvent,
    LoraModulation,
    Modulation,
    RxInfo,
    StatusEvent,
    TxAckEvent,
    TxInfo,
    UplinkEvent,
)
from gateways.chirpstack.parser import MAX_FRM_PAYLOAD, MAX_OBJECT_DEPTH, clean_text, parse_event
from gateways.chirpstack.topics import Topic, parse_topic, topic_for
from gateways.chirpstack.wire import (
    format_duration,
    format_f32,
    format_f64,
    format_fraction,
    format_timestamp,
    json_string,
    render,
    render_json,
    render_protobuf,
)

__all__ = [
    "EVENT_MESSAGES",
    "EVENT_SPECS",
    "EVENT_TYPES",
    "EVENT_TYPE_OF",
    "MAX_FRM_PAYLOAD",
    "MAX_OBJECT_DEPTH",
    "AckEvent",
    "DeviceInfo",
    "Event",
    "EventParseError",
    "EventSpec",
    "EventType",
    "JoinEvent",
    "Location",
    "LocationEvent",
    "LogEvent",
    "LoraModulation",
    "Modulation",
    "RxInfo",
    "StatusEvent",
    "Topic",
    "TxAckEvent",
    "TxInfo",
    "UplinkEvent",
    "clean_text",
    "format_duration",
    "format_f32",
    "format_f64",
    "format_fraction",
    "format_timestamp",
    "json_string",
    "parse_event",
    "parse_topic",
    "render",
    "render_json",
    "render_protobuf",
    "topic_for",
]
