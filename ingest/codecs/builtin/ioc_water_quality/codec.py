"""Decoder of the IOC multi-parameter water quality probe frame.

fPort 13, version 1, 15 bytes, big-endian::

    0      header   bits 7-4 version (1); bit 0 probe out of water (no water readings)
    1-2    int16    water temperature, 0.01 Cel
    3-4    uint16   pH, 0.01
    5-6    uint16   dissolved oxygen, 0.01 mg/L
    7-8    uint16   turbidity, 0.1 NTU
    9-12   uint32   electrical conductivity, 0.1 uS/cm
    13-14  uint16   battery, mV
"""

from __future__ import annotations

import struct
from typing import Any

from ingest.codecs.result import DecodeResult

__all__ = ["FPORT", "LENGTH", "VERSION", "decode"]

FPORT = 13
VERSION = 1
LENGTH = 15
_FRAME = struct.Struct(">BhHHHIH")


def decode(payload: bytes, fport: int) -> DecodeResult:
    if fport != FPORT:
        return DecodeResult.failure(f"unexpected fPort {fport}; this codec reads fPort {FPORT}")
    if len(payload) < LENGTH:
        return DecodeResult.failure(f"payload too short: {len(payload)} bytes, expected {LENGTH}")
    header, temperature, ph, oxygen, turbidity, conductivity, battery_mv = _FRAME.unpack_from(payload)
    if header >> 4 != VERSION:
        return DecodeResult.failure(f"unsupported frame version {header >> 4}; this codec reads {VERSION}")
    warnings: list[str] = []
    data: dict[str, Any] = {}
    if header & 0x01:
        warnings.append("probe out of water: no water readings")
    else:
        data["water_temperature"] = temperature / 100
        data["ph"] = ph / 100
        data["dissolved_oxygen"] = oxygen / 100
        data["turbidity"] = turbidity / 10
        data["conductivity"] = conductivity / 10
    data["battery_voltage"] = battery_mv / 1000
    if len(payload) > LENGTH:
        warnings.append(f"ignored {len(payload) - LENGTH} trailing bytes")
    return DecodeResult(data=data, warnings=tuple(warnings))
