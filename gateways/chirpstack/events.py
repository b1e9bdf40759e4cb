"""ChirpStack v4 integration events as they arrive on MQTT, parsed once into typed objects.

Both encodings of ``[integration.mqtt] json`` are read: JSON (the protobuf JSON mapping; parsed with msgspec
into structs whose camelCase names are checked against the ``chirpstack-api`` descriptors by the tests) and
binary protobuf (parsed with the ``chirpstack-api`` classes). Missing fields take proto3 defaults, unknown
fields are ignored, so older (v4.0, defaults omitted) and newer servers both parse.

Parsing is strict where a value goes into a bounded column or a key, so nothing after it can fail on the
event's values (docs/ingest-hardening.md): DevEUIs and gateway ids are exactly 16 ASCII hex digits (case
folded); fPort, fCnt, DR, RSSI, SNR, margin and frequency are range-checked, never wrapped; the FRMPayload is
at most 242 bytes; ``object`` is at most 32 levels deep; times must be representable in UTC. Control
characters (C0, DEL, C1) and lone surrogates are removed from every text field, because PostgreSQL's text
and jsonb cannot hold some of them and none of them means anything in a name, tag or log line.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
from chirpstack_api import integration
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from ioc_core.errors import SkippableError

__all__ = [
    "EVENT_TYPES",
    "MAX_FRM_PAYLOAD",
    "MAX_OBJECT_DEPTH",
    "AckEvent",
    "DeviceInfo",
    "Event",
    "EventParseError",
    "JoinEvent",
    "Location",
    "LocationEvent",
    "LogEvent",
    "RxInfo",
    "StatusEvent",
    "Topic",
    "TxAckEvent",
    "UplinkEvent",
    "clean_text",
    "parse_event",
    "parse_topic",
]

EventType = Literal["up", "join", "status", "ack", "txack", "log", "location"]
EVENT_TYPES: tuple[EventType, ...] = ("up", "join", "status", "ack", "txack", "log", "location")

# LoRaWAN's largest MACPayload is 250 bytes (RP002 regional parameters); FHDR (7) and FPort (1) leave 242.
MAX_FRM_PAYLOAD = 242
# Decoded objects of real codecs are one or two levels deep; a limit far above that keeps every walker
# over them (normalisation, JSON dumps) clear of Python's recursion limit.
MAX_OBJECT_DEPTH = 32
# ChirpStack de-duplicates an uplink over the gateways that heard it; a dense city hears one on tens.
_MAX_GATEWAYS = 1000
_U32 = 0xFFFF_FFFF

_EUI = re.compile(r"[0-9A-Fa-f]{16}").fullmatch
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


class EventParseError(SkippableError):
    """The topic or payload is not a ChirpStack v4 event we can read."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, stage="parse")


class _Camel(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=True):
    """Field names follow the proto3 JSON names (lowerCamelCase)."""


class DeviceInfo(_Camel):
    dev_eui: str = ""
    device_name: str = ""
    tenant_id: str = ""
    tenant_name: str = ""
    application_id: str = ""
    application_name: str = ""
    device_profile_id: str = ""
    device_profile_name: str = ""
    device_class_enabled: str = "CLASS_A"
    tags: dict[str, str] = {}


class Location(_Camel):
    latitude: float = 0.0
    longitude: float = 0.0
    altitude: float = 0.0
    source: str = "UNKNOWN"
    accuracy: float = 0.0


class RxInfo(_Camel):
    gateway_id: str = ""
    rssi: int = 0
    snr: float = 0.0
    channel: int = 0
    location: Location | None = None
    crc_status: str = "NO_CRC"


class LoraModulation(_Camel):
    bandwidth: int = 0
    spreading_factor: int = 0
    code_rate: str = "CR_UNDEFINED"


class Modulation(_Camel):
    lora: LoraModulation | None = None


class TxInfo(_Camel):
    frequency: int = 0
    modulation: Modulation | None = None


class _Event(_Camel):
    time: datetime | None = None
    device_info: DeviceInfo | None = None


class UplinkEvent(_Event):
    deduplication_id: uuid.UUID | None = None
    dev_addr: str = ""
    adr: bool = False
    dr: int = 0
    f_cnt: int = 0
    f_port: int = 0
    confirmed: bool = False
    data: str = ""
    object: dict[str, Any] | None = None
    rx_info: list[RxInfo] = []
    tx_info: TxInfo | None = None
    join_server_context: dict[str, Any] | None = None
    region_config_id: str = ""

    def payload(self) -> bytes:
        """The FRMPayload; ChirpStack writes padded standard base64, older tools URL-safe or unpadded."""
        return _b64(self.data)

    @property
    def encrypted(self) -> bool:
        """ChirpStack had no AppSKey: ``data`` is still encrypted and no codec can read it."""
        return self.join_server_context is not None


class JoinEvent(_Event):
    deduplication_id: uuid.UUID | None = None
    dev_addr: str = ""
    region_config_id: str = ""


class StatusEvent(_Event):
    deduplication_id: uuid.UUID | None = None
    margin: int = 0
    external_power_source: bool = False
    battery_level_unavailable: bool = False
    battery_level: float = 0.0


class AckEvent(_Event):
    deduplication_id: uuid.UUID | None = None
    queue_item_id: str = ""
    acknowledged: bool = False
    f_cnt_down: int = 0


class TxAckEvent(_Event):
    downlink_id: int = 0
    queue_item_id: str = ""
    f_cnt_down: int = 0
    gateway_id: str = ""


class LogEvent(_Event):
    level: str = "INFO"
    code: str = "UNKNOWN"
    description: str = ""
    context: dict[str, str] = {}


class LocationEvent(_Event):
    deduplication_id: uuid.UUID | None = None
    location: Location | None = None


Event = UplinkEvent | JoinEvent | StatusEvent | AckEvent | TxAckEvent | LogEvent | LocationEvent

_STRUCTS: dict[str, type[_Event]] = {
    "up": UplinkEvent,
    "join": JoinEvent,
    "status": StatusEvent,
    "ack": AckEvent,
    "txack": TxAckEvent,
    "log": LogEvent,
    "location": LocationEvent,
}
_PROTOS: dict[str, Any] = {
    "up": integration.UplinkEvent,
    "join": integration.JoinEvent,
    "status": integration.StatusEvent,
    "ack": integration.AckEvent,
    "txack": integration.TxAckEvent,
    "log": integration.LogEvent,
    "location": integration.LocationEvent,
}
_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {}


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
    if event not in _STRUCTS:
        raise EventParseError(f"unknown event type {event!r} in topic {topic!r}")
    if _EUI(parts[3]) is None:
        raise EventParseError(f"topic {topic!r} has a malformed DevEUI (16 ASCII hex digits expected)")
    return Topic(parts[1], parts[3].lower(), event)  # type: ignore[arg-type]


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
    if _EUI(info.dev_eui) is None:
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
        if _EUI(eui) is None:
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


def _parse_json(kind: str, payload: bytes) -> Event:
    decoder = _DECODERS.get(kind)
    if decoder is None:
        decoder = _DECODERS[kind] = msgspec.json.Decoder(_STRUCTS[kind])
    try:
        event: Event = decoder.decode(payload)
    except msgspec.ValidationError as err:
        raise EventParseError(f"JSON {kind} event does not fit the ChirpStack schema: {err}") from err
    except msgspec.DecodeError as err:
        raise EventParseError(f"payload is not valid JSON: {err}") from err
    except RecursionError as err:  # msgspec's own depth limit, on an ``object`` nested thousands deep
        raise EventParseError(f"JSON {kind} event is nested too deeply: {err}") from err
    return event


def _parse_protobuf(kind: str, payload: bytes) -> Event:
    try:
        message = _PROTOS[kind].FromString(payload)
    except (DecodeError, ValueError, RecursionError) as err:
        raise EventParseError(f"payload is neither JSON nor a {kind} protobuf: {err}") from err
    try:
        return _FROM_PROTO[kind](message)
    except (ValueError, OverflowError, OSError, RecursionError) as err:  # a timestamp outside datetime's range
        raise EventParseError(f"{kind} protobuf has an impossible value: {err}") from err


def _b64(text: str) -> bytes:
    if not text:
        return b""
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except ValueError:  # binascii.Error, or a plain ValueError for a non-ASCII character
        pass
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as err:
        raise EventParseError(f"data is not base64: {text[:40]!r}") from err


def _uuid(text: str) -> uuid.UUID | None:
    if not text:
        return None
    try:
        return uuid.UUID(text)
    except ValueError as err:
        raise EventParseError(f"deduplicationId {text!r} is not a UUID") from err


# --- protobuf messages into the same structs --------------------------------------------------------


def _ts(message: Any, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    stamp = getattr(message, field)
    return datetime.fromtimestamp(stamp.seconds, UTC).replace(microsecond=stamp.nanos // 1000)


def _device_info(message: Any) -> DeviceInfo | None:
    if not message.HasField("device_info"):
        return None
    d = message.device_info
    return DeviceInfo(
        dev_eui=d.dev_eui,
        device_name=d.device_name,
        tenant_id=d.tenant_id,
        tenant_name=d.tenant_name,
        application_id=d.application_id,
        application_name=d.application_name,
        device_profile_id=d.device_profile_id,
        device_profile_name=d.device_profile_name,
        device_class_enabled=_enum_name(d, "device_class_enabled"),
        tags=dict(d.tags),
    )


def _enum_name(message: Any, field: str) -> str:
    descriptor = message.DESCRIPTOR.fields_by_name[field].enum_type
    value = getattr(message, field)
    enum_value = descriptor.values_by_number.get(value)
    return str(enum_value.name) if enum_value else str(value)


def _location(message: Any) -> Location:
    return Location(
        latitude=message.latitude,
        longitude=message.longitude,
        altitude=message.altitude,
        source=_enum_name(message, "source"),
        accuracy=message.accuracy,
    )


def _uplink(m: Any) -> UplinkEvent:
    lora = m.tx_info.modulation.lora if m.tx_info.modulation.HasField("lora") else None
    return UplinkEvent(
        deduplication_id=_uuid(m.deduplication_id),
        time=_ts(m, "time"),
        device_info=_device_info(m),
        dev_addr=m.dev_addr,
        adr=m.adr,
        dr=m.dr,
        f_cnt=m.f_cnt,
        f_port=m.f_port,
        confirmed=m.confirmed,
        data=base64.b64encode(m.data).decode("ascii"),
        object=json_format.MessageToDict(m.object) if m.HasField("object") else None,
        rx_info=[
            RxInfo(
                gateway_id=rx.gateway_id,
                rssi=rx.rssi,
                snr=rx.snr,
                channel=rx.channel,
                location=_location(rx.location) if rx.HasField("location") else None,
                crc_status=_enum_name(rx, "crc_status"),
            )
            for rx in m.rx_info
        ],
        tx_info=TxInfo(
            frequency=m.tx_info.frequency,
            modulation=Modulation(
                lora=LoraModulation(
                    bandwidth=lora.bandwidth,
                    spreading_factor=lora.spreading_factor,
                    code_rate=_enum_name(lora, "code_rate"),
                )
                if lora is not None
                else None
            ),
        )
        if m.HasField("tx_info")
        else None,
        join_server_context=json_format.MessageToDict(m.join_server_context)
        if m.HasField("join_server_context")
        else None,
        region_config_id=m.region_config_id,
    )


def _join(m: Any) -> JoinEvent:
    return JoinEvent(
        deduplication_id=_uuid(m.deduplication_id),
        time=_ts(m, "time"),
        device_info=_device_info(m),
        dev_addr=m.dev_addr,
        region_config_id=m.region_config_id,
    )


def _status(m: Any) -> StatusEvent:
    return StatusEvent(
        deduplication_id=_uuid(m.deduplication_id),
        time=_ts(m, "time"),
        device_info=_device_info(m),
        margin=m.margin,
        external_power_source=m.external_power_source,
        battery_level_unavailable=m.battery_level_unavailable,
        battery_level=m.battery_level,
    )


def _ack(m: Any) -> AckEvent:
    return AckEvent(
        deduplication_id=_uuid(m.deduplication_id),
        time=_ts(m, "time"),
        device_info=_device_info(m),
        queue_item_id=m.queue_item_id,
        acknowledged=m.acknowledged,
        f_cnt_down=m.f_cnt_down,
    )


def _txack(m: Any) -> TxAckEvent:
    return TxAckEvent(
        downlink_id=m.downlink_id,
        time=_ts(m, "time"),
        device_info=_device_info(m),
        queue_item_id=m.queue_item_id,
        f_cnt_down=m.f_cnt_down,
        gateway_id=m.gateway_id,
    )


def _log(m: Any) -> LogEvent:
    return LogEvent(
        time=_ts(m, "time"),
        device_info=_device_info(m),
        level=_enum_name(m, "level"),
        code=_enum_name(m, "code"),
        description=m.description,
        context=dict(m.context),
    )


def _location_event(m: Any) -> LocationEvent:
    return LocationEvent(
        deduplication_id=_uuid(m.deduplication_id),
        time=_ts(m, "time"),
        device_info=_device_info(m),
        location=_location(m.location) if m.HasField("location") else None,
    )


_FROM_PROTO: dict[str, Callable[[Any], Event]] = {
    "up": _uplink,
    "join": _join,
    "status": _status,
    "ack": _ack,
    "txack": _txack,
    "log": _log,
    "location": _location_event,
}
