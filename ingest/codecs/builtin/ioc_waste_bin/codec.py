"""Decoder of the IOC ultrasonic waste bin fill level sensor frame.

fPort 15, version 1, 7 bytes, big-endian::

    0     header   bits 7-4 version (1); bit 0 fire alarm (temperature above 70 Cel); bit 1 tilt alarm
    1     uint8    fill level, % (0xFF: no echo, level unknown)
    2-3   int16    temperature inside the bin, 0.1 Cel
    4     uint8    tilt from upright, degrees
    5-6   uint16   battery, mV
"""

from __future__ import annotations

import struct
from typing import Any

from ingest.codecs.result import DecodeResult

__all__ = ["FPORT", "LENGTH", "NO_ECHO", "VERSION", "decode"]

FPORT = 15
VERSION = 1
LENGTH = 7
NO_ECHO = 0xFF
_FRAME = struct.Struct(">BBhBH")


def decode(payload: bytes, fport: int) -> DecodeResult:
    if fport != FPORT:
        return DecodeResult.failure(f"unexpected fPort {fport}; this codec reads fPort {FPORT}")
    if len(payload) < LENGTH:
        return DecodeResult.failure(f"payload too short: {len(payload)} bytes, expected {LENGTH}")
    header, fill, temperature, tilt, battery_mv = _FRAME.unpack_from(payload)
    if header >> 4 != VERSION:
        return DecodeResult.failure(f"unsupported frame version {header >> 4}; this codec reads {VERSION}")
    warnings: list[str] = []
    data: dict[str, Any] = {}
    if fill == NO_ECHO:
        warnings.append("no echo: fill level unknown")
    else:
        data["fill_level"] = fill
    data["temperature"] = temperature / 10
    data["tilt"] = tilt
    data["battery_voltage"] = battery_mv / 1000
    data["status"] = "fire" if header & 0x01 else "tilted" if header & 0x02 else "ok"
    if len(payload) > LENGTH:
        warnings.append(f"ignored {len(payload) - LENGTH} trailing bytes")
    return DecodeResult(data=data, warnings=tuple(warnings))
