"""Decoder of the IOC street light controller frame (mains powered, so no battery).

fPort 16, version 1, 8 bytes, big-endian::

    0     header   bits 7-4 version (1); bit 0 lamp on; bit 1 lamp failure (on but drawing no current)
    1     uint8    dimming level, %
    2-3   uint16   power drawn, 0.1 W
    4-7   uint32   energy counter since installation, Wh
"""

from __future__ import annotations

import struct
from typing import Any

from ingest.codecs.result import DecodeResult

__all__ = ["FPORT", "LENGTH", "VERSION", "decode"]

FPORT = 16
VERSION = 1
LENGTH = 8
_FRAME = struct.Struct(">BBHI")


def decode(payload: bytes, fport: int) -> DecodeResult:
    if fport != FPORT:
        return DecodeResult.failure(f"unexpected fPort {fport}; this codec reads fPort {FPORT}")
    if len(payload) < LENGTH:
        return DecodeResult.failure(f"payload too short: {len(payload)} bytes, expected {LENGTH}")
    header, dimming, power, energy_wh = _FRAME.unpack_from(payload)
    if header >> 4 != VERSION:
        return DecodeResult.failure(f"unsupported frame version {header >> 4}; this codec reads {VERSION}")
    warnings: list[str] = []
    if dimming > 100:
        return DecodeResult.failure(f"invalid dimming level {dimming} %; expected 0..100")
    data: dict[str, Any] = {
        "lamp_on": header & 0x01,
        "dimming": dimming,
        "power": power / 10,
        "energy": energy_wh / 1000,
        "status": "lamp_failure" if header & 0x02 else "ok",
    }
    if header & 0x02:
        warnings.append("lamp failure: switched on but drawing no current")
    if len(payload) > LENGTH:
        warnings.append(f"ignored {len(payload) - LENGTH} trailing bytes")
    return DecodeResult(data=data, warnings=tuple(warnings))
