"""Decoder of the IOC in-ground parking bay sensor frame.

fPort 14, version 1, 4 bytes, big-endian::

    0     header   bits 7-4 version (1); bit 0 sent because the state changed (else a heartbeat)
    1     uint8    bay state: 0 free, 1 occupied
    2-3   uint16   battery, mV
"""

from __future__ import annotations

import struct
from typing import Any

from ingest.codecs.result import DecodeResult

__all__ = ["FPORT", "LENGTH", "VERSION", "decode"]

FPORT = 14
VERSION = 1
LENGTH = 4
_FRAME = struct.Struct(">BBH")


def decode(payload: bytes, fport: int) -> DecodeResult:
    if fport != FPORT:
        return DecodeResult.failure(f"unexpected fPort {fport}; this codec reads fPort {FPORT}")
    if len(payload) < LENGTH:
        return DecodeResult.failure(f"payload too short: {len(payload)} bytes, expected {LENGTH}")
    header, state, battery_mv = _FRAME.unpack_from(payload)
    if header >> 4 != VERSION:
        return DecodeResult.failure(f"unsupported frame version {header >> 4}; this codec reads {VERSION}")
    if state > 1:
        return DecodeResult.failure(f"invalid bay state {state}; expected 0 (free) or 1 (occupied)")
    data: dict[str, Any] = {
        "occupied": state,
        "battery_voltage": battery_mv / 1000,
        "trigger": "change" if header & 0x01 else "heartbeat",
    }
    warnings = (f"ignored {len(payload) - LENGTH} trailing bytes",) if len(payload) > LENGTH else ()
    return DecodeResult(data=data, warnings=warnings)
