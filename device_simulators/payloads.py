"""Encoders that write each simulated model's uplink bytes, the inverse of its codec.

Each encoder takes the values a codec would decode (``water_level``, ``battery_voltage``, …) plus optional
flag keys (``sensor_fault``, ``alarm``, …, truthy when set) and returns the FRMPayload. Values outside a
field's range saturate the way a device's firmware clamps them, so a glitching sensor still produces a
well-formed frame whose reading the ingest flags as out of range.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

__all__ = [
    "FORMATS",
    "PayloadFormat",
    "Values",
    "cayenne_runtime_object",
    "encode",
    "encode_air_quality",
    "encode_cayenne_th",
    "encode_parking",
    "encode_rain_gauge",
    "encode_street_light",
    "encode_waste_bin",
    "encode_water_level",
    "encode_water_quality",
]

Values = Mapping[str, float]

_VERSION: Final = 0x10  # version 1 in the high nibble of every IOC header byte

_WATER_LEVEL = struct.Struct(">BhHH")
_RAIN_GAUGE = struct.Struct(">BHHH")
_AIR_QUALITY = struct.Struct(">BHHHhBH")
_WATER_QUALITY = struct.Struct(">BhHHHIH")
_PARKING = struct.Struct(">BBH")
_WASTE_BIN = struct.Struct(">BBhBH")
_STREET_LIGHT = struct.Struct(">BBHI")


def _clamp(value: float, scale: float, low: int, high: int) -> int:
    if not math.isfinite(value):
        return high
    scaled = round(value * scale)
    return low if scaled < low else high if scaled > high else scaled


def _u8(value: float, scale: float = 1.0) -> int:
    return _clamp(value, scale, 0, 0xFF)


def _u16(value: float, scale: float = 1.0) -> int:
    return _clamp(value, scale, 0, 0xFFFF)


def _i16(value: float, scale: float = 1.0) -> int:
    return _clamp(value, scale, -0x8000, 0x7FFF)


def _u32(value: float, scale: float = 1.0) -> int:
    return _clamp(value, scale, 0, 0xFFFFFFFF)


def _flag(values: Values, name: str, bit: int) -> int:
    return bit if values.get(name) else 0


def _battery_mv(values: Values) -> int:
    return _u16(values.get("battery_voltage", 0.0), 1000)


def encode_water_level(values: Values) -> bytes:
    """``water_level`` (station) or ``flood_depth`` (street sensor), ``distance``, ``battery_voltage``."""
    flood = "flood_depth" in values
    level = values["flood_depth"] if flood else values.get("water_level", 0.0)
    header = (
        _VERSION
        | (0x01 if flood else 0)
        | _flag(values, "sensor_fault", 0x02)
        | _flag(values, "alarm", 0x04)
    )
    return _WATER_LEVEL.pack(header, _i16(level, 1000), _u16(values.get("distance", 0.0), 1000),
                             _battery_mv(values))


def encode_rain_gauge(values: Values) -> bytes:
    """``rainfall`` (rounded to whole 0.2 mm tips), ``rain_rate``, ``battery_voltage``."""
    header = _VERSION | _flag(values, "bucket_stuck", 0x01)
    tips = _u16(values.get("rainfall", 0.0), 5)  # 0.2 mm per tip
    return _RAIN_GAUGE.pack(header, tips, _u16(values.get("rain_rate", 0.0), 10), _battery_mv(values))


def encode_air_quality(values: Values) -> bytes:
    header = _VERSION | _flag(values, "pm_fault", 0x01) | _flag(values, "co2_warmup", 0x02)
    return _AIR_QUALITY.pack(
        header,
        _u16(values.get("pm2_5", 0.0), 10),
        _u16(values.get("pm10", 0.0), 10),
        _u16(values.get("co2", 0.0)),
        _i16(values.get("temperature", 0.0), 100),
        _u8(values.get("humidity", 0.0), 2),
        _battery_mv(values),
    )


def encode_water_quality(values: Values) -> bytes:
    header = _VERSION | _flag(values, "out_of_water", 0x01)
    return _WATER_QUALITY.pack(
        header,
        _i16(values.get("water_temperature", 0.0), 100),
        _u16(values.get("ph", 0.0), 100),
        _u16(values.get("dissolved_oxygen", 0.0), 100),
        _u16(values.get("turbidity", 0.0), 10),
        _u32(values.get("conductivity", 0.0), 10),
        _battery_mv(values),
    )


def encode_parking(values: Values) -> bytes:
    """``occupied`` (0 or 1), ``battery_voltage``; flag ``change`` for a state-change frame."""
    header = _VERSION | _flag(values, "change", 0x01)
    return _PARKING.pack(header, 1 if values.get("occupied") else 0, _battery_mv(values))


def encode_waste_bin(values: Values) -> bytes:
    """``fill_level`` (absent or NaN: no echo), ``temperature``, ``tilt``, ``battery_voltage``."""
    header = _VERSION | _flag(values, "fire", 0x01) | _flag(values, "tilted", 0x02)
    fill = values.get("fill_level", math.nan)
    return _WASTE_BIN.pack(
        header,
        0xFF if not math.isfinite(fill) else _clamp(fill, 1, 0, 100),
        _i16(values.get("temperature", 0.0), 10),
        _clamp(values.get("tilt", 0.0), 1, 0, 180),
        _battery_mv(values),
    )


def encode_street_light(values: Values) -> bytes:
    """``lamp_on``, ``dimming`` (%), ``power`` (W), ``energy`` (kWh); flag ``lamp_failure``."""
    header = _VERSION | _flag(values, "lamp_on", 0x01) | _flag(values, "lamp_failure", 0x02)
    return _STREET_LIGHT.pack(
        header,
        _clamp(values.get("dimming", 0.0), 1, 0, 100),
        _u16(values.get("power", 0.0), 10),
        _u32(values.get("energy", 0.0), 1000),
    )


# Cayenne LPP: channel, type, big-endian value.
_LPP_TEMPERATURE: Final = 0x67  # int16, 0.1 Cel
_LPP_HUMIDITY: Final = 0x68  # uint8, 0.5 %
_LPP_ANALOG_INPUT: Final = 0x02  # int16, 0.01
_LPP_TH = struct.Struct(">BBhBBBBBh")


def encode_cayenne_th(values: Values) -> bytes:
    """Standard Cayenne LPP: channel 1 temperature, 2 humidity, 3 analog input carrying the battery volts."""
    return _LPP_TH.pack(
        1, _LPP_TEMPERATURE, _i16(values.get("temperature", 0.0), 10),
        2, _LPP_HUMIDITY, _u8(values.get("humidity", 0.0), 2),
        3, _LPP_ANALOG_INPUT, _i16(values.get("battery_voltage", 0.0), 100),
    )  # fmt: skip


# ChirpStack's CAYENNE_LPP runtime names (chirpstack/src/codec/cayenne_lpp.rs) for the types we send.
_RUNTIME_TYPES: Final[Mapping[int, tuple[str, int, bool, float]]] = {
    _LPP_TEMPERATURE: ("temperatureSensor", 2, True, 10.0),
    _LPP_HUMIDITY: ("humiditySensor", 1, False, 2.0),
    _LPP_ANALOG_INPUT: ("analogInput", 2, True, 100.0),
    0x00: ("digitalInput", 1, False, 1.0),
    0x01: ("digitalOutput", 1, False, 1.0),
    0x03: ("analogOutput", 2, True, 100.0),
    0x65: ("illuminanceSensor", 2, False, 1.0),
    0x66: ("presenceSensor", 1, False, 1.0),
    0x73: ("barometer", 2, False, 10.0),
}


def cayenne_runtime_object(payload: bytes) -> dict[str, dict[str, float]] | None:
    """What ChirpStack's built-in CAYENNE_LPP codec puts in ``object``; None where it would fail."""
    out: dict[str, dict[str, float]] = {}
    at = 0
    # Like ChirpStack's decoder, a lone trailing byte ends the frame silently; a short value is an error.
    while at + 2 <= len(payload):
        channel, type_id = payload[at], payload[at + 1]
        spec = _RUNTIME_TYPES.get(type_id)
        if spec is None or at + 2 + spec[1] > len(payload):
            return None
        name, size, signed, divisor = spec
        raw = int.from_bytes(payload[at + 2 : at + 2 + size], "big", signed=signed)
        out.setdefault(name, {})[str(channel)] = raw / divisor
        at += 2 + size
    return out


@dataclass(frozen=True, slots=True)
class PayloadFormat:
    model_id: str
    codec_id: str
    fport: int
    encode: Callable[[Values], bytes]


FORMATS: Final[Mapping[str, PayloadFormat]] = MappingProxyType(
    {
        f.model_id: f
        for f in (
            PayloadFormat("ioc-wl100", "ioc-water-level", 10, encode_water_level),
            PayloadFormat("ioc-fd100", "ioc-water-level", 10, encode_water_level),
            PayloadFormat("ioc-rg100", "ioc-rain-gauge", 11, encode_rain_gauge),
            PayloadFormat("ioc-aq100", "ioc-air-quality", 12, encode_air_quality),
            PayloadFormat("ioc-wq100", "ioc-water-quality", 13, encode_water_quality),
            PayloadFormat("ioc-pk100", "ioc-parking", 14, encode_parking),
            PayloadFormat("ioc-wb100", "ioc-waste-bin", 15, encode_waste_bin),
            PayloadFormat("ioc-sl100", "ioc-street-light", 16, encode_street_light),
            PayloadFormat("ioc-th100", "cayenne-lpp", 2, encode_cayenne_th),
        )
    }
)


def encode(model_id: str, values: Values) -> bytes:
    """The uplink bytes of ``model_id`` for ``values``; KeyError for an unknown model."""
    return FORMATS[model_id].encode(values)
