"""The one table of ChirpStack v4 event types: topic name, our struct, the ``chirpstack-api`` message, converter.

ChirpStack publishes each event on ``application/{id}/device/{dev_eui}/event/{type}``; every reader of a type
name (topic parsing, both decoders, the wire writer, the simulator, the ingest's ``device_events`` rows) looks
it up here, so adding a type is one row (and the ``EventType`` literal beside it, which the tests hold to it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from chirpstack_api import integration

from gateways.chirpstack import protobuf
from gateways.chirpstack.events import (
    AckEvent,
    Event,
    JoinEvent,
    LocationEvent,
    LogEvent,
    StatusEvent,
    TxAckEvent,
    UplinkEvent,
)

__all__ = ["EVENT_MESSAGES", "EVENT_SPECS", "EVENT_TYPES", "EVENT_TYPE_OF", "EventSpec", "EventType"]

EventType = Literal["up", "join", "status", "ack", "txack", "log", "location"]


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One event type as ChirpStack publishes it and as we read it."""

    name: EventType
    """The last topic level, ``…/event/<name>``; also ``device_events.event_type`` for all but ``up``."""
    struct: type[Event]
    """What both encodings are parsed into."""
    message: Any
    """The ``chirpstack_api.integration`` message class of the protobuf encoding."""
    from_protobuf: Callable[[Any], Event]
    """Turns a parsed ``message`` into ``struct``."""


EVENT_SPECS: Final[Mapping[EventType, EventSpec]] = {
    spec.name: spec
    for spec in (
        EventSpec("up", UplinkEvent, integration.UplinkEvent, protobuf.uplink_event),
        EventSpec("join", JoinEvent, integration.JoinEvent, protobuf.join_event),
        EventSpec("status", StatusEvent, integration.StatusEvent, protobuf.status_event),
        EventSpec("ack", AckEvent, integration.AckEvent, protobuf.ack_event),
        EventSpec("txack", TxAckEvent, integration.TxAckEvent, protobuf.txack_event),
        EventSpec("log", LogEvent, integration.LogEvent, protobuf.log_event),
        EventSpec("location", LocationEvent, integration.LocationEvent, protobuf.location_event),
    )
}

# Views of the table for readers that need one column.
EVENT_TYPES: Final[tuple[EventType, ...]] = tuple(EVENT_SPECS)
EVENT_MESSAGES: Final[Mapping[str, Any]] = {name: spec.message for name, spec in EVENT_SPECS.items()}
EVENT_TYPE_OF: Final[Mapping[type[Event], EventType]] = {spec.struct: name for name, spec in EVENT_SPECS.items()}
"""The type name of a parsed event: ``EVENT_TYPE_OF[type(event)]``."""
