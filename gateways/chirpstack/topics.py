"""ChirpStack v4 event topics: ``application/{application_id}/device/{dev_eui}/event/{type}``, parsed and built.

This is ChirpStack's default ``event_topic`` template; the DevEUI level is case-folded to lower case.
"""

from __future__ import annotations

import msgspec

from gateways.chirpstack.event_types import EVENT_SPECS, EVENT_TYPES, EventType
from gateways.chirpstack.events import EventParseError, match_eui

__all__ = ["Topic", "parse_topic", "topic_for"]


class Topic(msgspec.Struct, frozen=True):
    application_id: str
    dev_eui: str
    event: EventType


def parse_topic(topic: str) -> Topic:
    """``application/{application_id}/device/{dev_eui}/event/{event}`` (ChirpStack's default template)."""
    parts = topic.split("/")
    if len(parts) != 6 or parts[0] != "application" or parts[2] != "device" or parts[4] != "event":
        raise EventParseError(f"topic {topic!r} is not application/<id>/device/<dev_eui>/event/<type>")
    event = parts[5]
    if event not in EVENT_SPECS:
        raise EventParseError(f"unknown event type {event!r} in topic {topic!r}")
    if match_eui(parts[3]) is None:
        raise EventParseError(f"topic {topic!r} has a malformed DevEUI (16 ASCII hex digits expected)")
    return Topic(parts[1], parts[3].lower(), event)  # type: ignore[arg-type]


def topic_for(application_id: str, dev_eui: str, event: str) -> str:
    """The topic ChirpStack publishes ``event`` of device ``dev_eui`` on."""
    if event not in EVENT_SPECS:
        raise ValueError(f"unknown ChirpStack event type {event!r}; expected one of {', '.join(EVENT_TYPES)}")
    if len(dev_eui) != 16:
        raise ValueError(f"DevEUI must be 16 hex characters, got {dev_eui!r}")
    return f"application/{application_id}/device/{dev_eui.lower()}/event/{event}"
