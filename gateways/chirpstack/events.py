"""ChirpStack v4 integration events as typed structs: the one shape both encodings are parsed into.

Field names follow the proto3 JSON names of the ``chirpstack-api`` messages (the tests check them against
the descriptors), so the JSON encoding decodes straight into these structs with msgspec; the protobuf
encoding is converted into them by ``gateways.chirpstack.protobuf``. Missing fields take proto3 defaults and
unknown fields are ignored, so older (v4.0, defaults omitted) and newer servers both parse.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from datetime import datetime
from typing import Any, Final

import msgspec

from ioc_core.errors import SkippableError

__all__ = [
    "AckEvent",
    "DeviceInfo",
    "Event",
    "EventParseError",
    "JoinEvent",
    "Location",
    "LocationEvent",
    "LogEvent",
    "LoraModulation",
    "Modulation",
    "RxInfo",
    "StatusEvent",
    "TxAckEvent",
    "TxInfo",
    "UplinkEvent",
    "match_eui",
]

match_eui: Final = re.compile(r"[0-9A-Fa-f]{16}").fullmatch
"""A match (not None) when the text is a DevEUI or gateway id: exactly 16 ASCII hex digits, either case."""


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
