"""Decoder of the IOC roadside air quality frame (PM2.5, PM10, CO2, temperature, humidity).

fPort 12, version 1, 12 bytes, big-endian::

    0      header   bits 7-4 version (1); bit 0 particle sensor fault; bit 1 CO2 sensor warming up
    1-2    uint16   PM2.5, 0.1 ug/m3
    3-4    uint16   PM10, 0.1 ug/m3
    5-6    uint16   CO2, ppm
    7-8    int16    air temperature, 0.01 Cel
    9      uint8    relative humidity, 0.5 %
    10-11  uint16   battery, mV
"""

from __future__ import annotations

import struct
from typing import Any

from ingest.codecs.result import DecodeResult

__all__ = ["FPORT", "LENGTH", "VERSION", "decode"]

FPORT = 12
VERSION = 1
LENGTH = 12
_FRAME = struct.Struct(">BHHHhBH")


def decode(payload: bytes, fport: int) -> DecodeResult:
    if fport != FPORT:
        return DecodeResult.failure(f"unexpected fPort {fport}; this codec reads fPort {FPORT}")
    if len(payload) < LENGTH:
        return DecodeResult.failure(f"payload too short: {len(payload)} bytes, expected {LENGTH}")
    header, pm2_5, pm10, co2, temperature, humidity, battery_mv = _FRAME.unpack_from(payload)
    if header >> 4 != VERSION:
        return DecodeResult.failure(f"unsupported frame version {header >> 4}; this codec reads {VERSION}")
    warnings: list[str] = []
    data: dict[str, Any] = {}
    if header & 0x01:
        warnings.append("particle sensor fault: PM2.5 and PM10 not measured")
    else:
        data["pm2_5"] = pm2_5 / 10
        data["pm10"] = pm10 / 10
    if header & 0x02:
        warnings.append("CO2 sensor warming up: CO2 not measured")
    else:
        data["co2"] = co2
    data["temperature"] = temperature / 100
    data["humidity"] = humidity / 2
    data["battery_voltage"] = battery_mv / 1000
    if len(payload) > LENGTH:
        warnings.append(f"ignored {len(payload) - LENGTH} trailing bytes")
    return DecodeResult(data=data, warnings=tuple(warnings))
