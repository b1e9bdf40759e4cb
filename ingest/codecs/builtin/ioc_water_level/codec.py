"""Decoder of the IOC water level frame (river, canal and sea stations; street flood depth sensors).

fPort 10, version 1, 7 bytes, big-endian::

    0     header   bits 7-4 version (1); bit 0 mode: 0 level station, 1 street flood depth;
                   bit 1 sensor fault (no echo); bit 2 level alarm raised by the device
    1-2   int16    level in mm: the stage above the station's gauge zero (signed, for stations kept on a
                   national datum), or flood depth in mode 1
    3-4   uint16   distance from the sensor to the water surface, mm
    5-6   uint16   battery, mV
"""

from __future__ import annotations

import struct
from typing import Any

from ingest.codecs.result import DecodeResult

__all__ = ["FPORT", "LENGTH", "VERSION", "decode"]

FPORT = 10
VERSION = 1
LENGTH = 7
_FRAME = struct.Struct(">BhHH")


def decode(payload: bytes, fport: int) -> DecodeResult:
    if fport != FPORT:
        return DecodeResult.failure(f"unexpected fPort {fport}; this codec reads fPort {FPORT}")
    if len(payload) < LENGTH:
        return DecodeResult.failure(f"payload too short: {len(payload)} bytes, expected {LENGTH}")
    header, level_mm, distance_mm, battery_mv = _FRAME.unpack_from(payload)
    if header >> 4 != VERSION:
        return DecodeResult.failure(f"unsupported frame version {header >> 4}; this codec reads {VERSION}")
    warnings: list[str] = []
    data: dict[str, Any] = {}
    if header & 0x02:
        warnings.append("sensor fault: the device measured no level")
    else:
        data["flood_depth" if header & 0x01 else "water_level"] = level_mm / 1000
        data["distance"] = distance_mm / 1000
    data["battery_voltage"] = battery_mv / 1000
    data["status"] = "fault" if header & 0x02 else "alarm" if header & 0x04 else "ok"
    if len(payload) > LENGTH:
        warnings.append(f"ignored {len(payload) - LENGTH} trailing bytes")
    return DecodeResult(data=data, warnings=tuple(warnings))
