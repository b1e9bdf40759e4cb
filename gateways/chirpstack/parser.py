"""ChirpStack v4 integration events parsed once, strictly, where they enter: ``parse_event``.

Both encodings of ``[integration.mqtt] json`` are read: JSON (the protobuf JSON mapping; decoded with msgspec
straight into the structs of ``events``) and binary protobuf (read with the ``chirpstack-api`` classes and
converted by ``protobuf``); the first byte tells them apart.

Parsing is strict where a value goes into a bounded column or a key, so nothing after it can fail on the
event's values (docs/ingest-hardening.md): DevEUIs and gateway ids are exactly 16 ASCII hex digits (case
folded); fPort, fCnt, DR, RSSI, SNR, margin and frequency are range-checked, never wrapped; the FRMPayload is
at most 242 bytes; ``object`` is at most 32 levels deep; times must be representable in UTC. Control
characters (C0, DEL, C1) and lone surrogates are removed from every text field, because PostgreSQL's text
and jsonb cannot hold some of them and none of them means anything in a name, tag or log line.
"""

from __future__ import annotations

import math
import re
from datetime import UTC
from typing import Any

import msgspec
from google.protobuf.message import DecodeError

from gateways.chirpstack.event_types import EVENT_SPECS, EventType
from gateways.chirpstack.events import (
    AckEvent,
    Event,
    EventParseError,
    Location,
    LocationEvent,
    RxInfo,
    StatusEvent,
    TxAckEvent,
    UplinkEvent,
    match_eui,
)
from gateways.chirpstack.topics import Topic

__all__ = ["MAX_FRM_PAYLOAD", "MAX_OBJECT_DEPTH", "clean_text", "parse_event"]

# LoRaWAN's largest MACPayload is 250 bytes (RP002 regional parameters); FHDR (7) and FPort (1) leave 242.
MAX_FRM_PAYLOAD = 242
# Decoded objects of real codecs are one or two levels deep; a limit far above that keeps every walker
# over them (normalisation, JSON dumps) clear of Python's recursion limit.
MAX_OBJECT_DEPTH = 32
# ChirpStack de-duplicates an uplink over the gateways that heard it; a dense city hears one on tens.
_MAX_GATEWAYS = 1000
_U32 = 0xFFFF_FFFF

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {}


def parse_event(topic: Topic, payload: bytes) -> Event:
    """Parse either encoding; the first byte tells them apart (``{`` cannot start a valid event protobuf)."""
    first = payload[:1]
    if first in (b" ", b"\t", b"\r", b"\n"):
        first = payload.lstrip()[:1]
    if first == b"{":
        event = _parse_json(topic.event, payload)
        # JSON strings hold control characters and surrogates only as escapes, DEL and C1 raw: payloads
        # with none of those (nearly all) skip the walk over every text field.
        if b"\\" in payload or b"\x7f" in payload or b"\xc2" in payload:
            _clean(event)
    else:
        event = _parse_protobuf(topic.event, payload)
        _clean(event)
    info = event.device_info
    if info is None or not info.dev_eui:
        raise EventParseError("event has no deviceInfo.devEui (a ChirpStack v3 payload?)")
    if match_eui(info.dev_eui) is None:
        raise EventParseError(f"deviceInfo.devEui {info.dev_eui[:40]!r} is not 16 ASCII hex digits")
    info.dev_eui = info.dev_eui.lower()
    stamp = event.time
    if stamp is not None and stamp.tzinfo is not UTC:
        # ChirpStack writes +00:00; other offsets (or none) are turned into UTC once, here at the edge,
        # so hourly buckets are UTC hours in both storage modes.
        try:
            event.time = stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)
        except OverflowError as err:  # 0001-01-01T00:00:00+14:00 is before year 1 in UTC
            raise EventParseError(f"time {stamp.isoformat()} cannot be expressed in UTC") from err
    if info.dev_eui != topic.dev_eui:
        raise EventParseError(f"payload DevEUI {info.dev_eui} does not match topic DevEUI {topic.dev_eui}")
    if isinstance(event, UplinkEvent):
        if event.deduplication_id is None:
            raise EventParseError("uplink event without deduplicationId")
        _check_uplink(event)
    else:
        _check_other(event)
    return event


def _range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:  # also refuses NaN
        raise EventParseError(f"{name} {value!r} is outside {low}..{high}")


def _gateway_id(rx: RxInfo | TxAckEvent) -> None:
    eui = rx.gateway_id
    if eui:
        if match_eui(eui) is None:
            raise EventParseError(f"gateway id {eui[:40]!r} is not 16 ASCII hex digits")
        rx.gateway_id = eui.lower()


def _check_uplink(event: UplinkEvent) -> None:
    """Ranges of the values that go into bounded columns; an event outside them is refused, not wrapped."""
    if not 0 <= event.f_port <= 255:
        _range("fPort", event.f_port, 0, 255)
    if not 0 <= event.f_cnt <= _U32:
        _range("fCnt", event.f_cnt, 0, _U32)
    if not 0 <= event.dr <= 15:
        _range("dr", event.dr, 0, 15)
    # Base64 of 242 bytes is at most 324 characters (more with line breaks some tools insert).
    if len(event.data) > 330 and len(event.payload()) > MAX_FRM_PAYLOAD:
        raise EventParseError(f"FRMPayload of {len(event.payload())} bytes is longer than LoRaWAN allows "
                              f"({MAX_FRM_PAYLOAD})")
    rx_info = event.rx_info
    if len(rx_info) > _MAX_GATEWAYS:
        raise EventParseError(f"{len(rx_info)} rxInfo entries (at most {_MAX_GATEWAYS})")
    for rx in rx_info:
        if not -200 <= rx.rssi <= 50:
            _range("rxInfo.rssi", rx.rssi, -200, 50)
        if not -50.0 <= rx.snr <= 50.0:
            _range("rxInfo.snr", rx.snr, -50.0, 50.0)
        _gateway_id(rx)
        if rx.location is not None and not _sane_location(rx.location):
            # A gateway's broken GPS fix is metadata: drop it rather than the uplink.
            rx.location = None
    tx = event.tx_info
    if tx is not None:
        if not 0 <= tx.frequency <= _U32:
            _range("txInfo.frequency", tx.frequency, 0, _U32)
        lora = tx.modulation.lora if tx.modulation is not None else None
        if lora is not None:
            _range("spreadingFactor", lora.spreading_factor, 0, 12)
    if event.object is not None and _too_deep(event.object):
        raise EventParseError(f"object is nested deeper than {MAX_OBJECT_DEPTH} levels")


def _check_other(event: Event) -> None:
    if isinstance(event, StatusEvent):
        _range("margin", event.margin, -32, 31)
        # Stored as a real; the percentage's own range (0-100) is a quality flag, not a refusal.
        _range("batteryLevel", event.battery_level, -1e6, 1e6)
    elif isinstance(event, TxAckEvent):
        _gateway_id(event)
        _range("fCntDown", event.f_cnt_down, 0, _U32)
    elif isinstance(event, AckEvent):
        _range("fCntDown", event.f_cnt_down, 0, _U32)
    elif isinstance(event, LocationEvent) and event.location is not None and not _sane_location(event.location):
        loc = event.location
        raise EventParseError(f"location {loc.latitude!r}, {loc.longitude!r}, {loc.altitude!r} is not on Earth")


def _sane_location(loc: Location) -> bool:
    return (-90.0 <= loc.latitude <= 90.0 and -180.0 <= loc.longitude <= 180.0
            and -1e5 <= loc.altitude <= 1e5 and math.isfinite(loc.accuracy))


def _too_deep(data: dict[str, Any]) -> bool:
    # Iterative: the point is to refuse what would exhaust the recursion of the walkers after us.
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_OBJECT_DEPTH:
            return True
        children = value.values() if type(value) is dict else value
        for child in children:
            kind = type(child)
            if kind is dict or kind is list:
                stack.append((child, depth + 1))
    return False


def clean_text(text: str) -> str:
    """``text`` without control characters (C0, DEL, C1) and lone surrogates."""
    return _CONTROL.sub("", text) if _CONTROL.search(text) is not None else text


def _clean(value: Any) -> None:
    """Remove control characters from every text field of a parsed event, in place (``object`` aside: its
    strings are never stored, and its keys only name metrics)."""
    for name in value.__struct_fields__:
        item = getattr(value, name)
        kind = type(item)
        if kind is str:
            if _CONTROL.search(item) is not None:
                setattr(value, name, _CONTROL.sub("", item))
        elif kind is list:
            for element in item:
                if isinstance(element, msgspec.Struct):
                    _clean(element)
        elif kind is dict:
            if name in ("object", "join_server_context"):
                continue
            if any(_CONTROL.search(k) or _CONTROL.search(v) for k, v in item.items()):
                setattr(value, name, {clean_text(k): clean_text(v) for k, v in item.items()})
        elif isinstance(item, msgspec.Struct):
            _clean(item)


def _parse_json(kind: EventType, payload: bytes) -> Event:
    decoder = _DECODERS.get(kind)
    if decoder is None:
        decoder = _DECODERS[kind] = msgspec.json.Decoder(EVENT_SPECS[kind].struct)
    try:
        event: Event = decoder.decode(payload)
    except msgspec.ValidationError as err:
        raise EventParseError(f"JSON {kind} event does not fit the ChirpStack schema: {err}") from err
    except msgspec.DecodeError as err:
        raise EventParseError(f"payload is not valid JSON: {err}") from err
    except RecursionError as err:  # msgspec's own depth limit, on an ``object`` nested thousands deep
        raise EventParseError(f"JSON {kind} event is nested too deeply: {err}") from err
    return event


def _parse_protobuf(kind: EventType, payload: bytes) -> Event:
    spec = EVENT_SPECS[kind]
    try:
        message = spec.message.FromString(payload)
    except (DecodeError, ValueError, RecursionError) as err:
        raise EventParseError(f"payload is neither JSON nor a {kind} protobuf: {err}") from err
    try:
        return spec.from_protobuf(message)
    except (ValueError, OverflowError, OSError, RecursionError) as err:  # a timestamp outside datetime's range
        raise EventParseError(f"{kind} protobuf has an impossible value: {err}") from err

