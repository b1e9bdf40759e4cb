"""Decoder of the IOC tipping-bucket rain gauge frame.

fPort 11, version 1, 7 bytes, big-endian::

    0     header   bits 7-4 version (1); bit 0 bucket stuck (no tips counted although it rains)
    1-2   uint16   bucket tips since the previous report, 0.2 mm each
    3-4   uint16   highest rain rate during the interval, 0.1 mm/h
    5-6   uint16   battery, mV
"""

from __future__ import annotations

import struct
from typing import Any

from ingest.codecs.result import DecodeResult

__all__ = ["FPORT", "LENGTH", "MM_PER_TIP", "VERSION", "decode"]

FPORT = 11
VERSION = 1
LENGTH = 7
MM_PER_TIP = 0.2
_FRAME = struct.Struct(">BHHH")


def decode(payload: bytes, fport: int) -> DecodeResult:
    if fport != FPORT:
        return DecodeResult.failure(f"unexpected fPort {fport}; this codec reads fPort {FPORT}")
    if len(payload) < LENGTH:
        return DecodeResult.failure(f"payload too short: {len(payload)} bytes, expected {LENGTH}")
    header, tips, rate, battery_mv = _FRAME.unpack_from(payload)
    if header >> 4 != VERSION:
        return DecodeResult.failure(f"unsupported frame version {header >> 4}; this codec reads {VERSION}")
    warnings: list[str] = []
    data: dict[str, Any] = {}
    if header & 0x01:
        warnings.append("bucket stuck: rainfall not measured")
    else:
        # tips * 2 / 10 rather than tips * 0.2, so 3 tips read 0.6 and not 0.6000000000000001
        data["rainfall"] = tips * 2 / 10
        data["rain_rate"] = rate / 10
    data["battery_voltage"] = battery_mv / 1000
    if len(payload) > LENGTH:
        warnings.append(f"ignored {len(payload) - LENGTH} trailing bytes")
    return DecodeResult(data=data, warnings=tuple(warnings))
