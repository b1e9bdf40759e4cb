"""Cayenne LPP: IPSO types plus the ElectronicCats extended set, decoded to TTN-style ``<type>_<channel>``."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from ingest.codecs.result import DecodeResult

__all__ = ["TYPES", "LppType", "decode"]


@dataclass(frozen=True, slots=True)
class LppType:
    """One LPP data type: big-endian fields of equal width, each divided by its resolution divisor."""

    name: str
    size: int
    signed: bool
    divisors: tuple[int, ...]
    # Names of the fields when the value is an object (accelerometer, GPS, colour); empty for a scalar.
    fields: tuple[str, ...] = ()
    # 1-, 2- and 4-byte fields unpack in one C call; 3-byte ones (GPS) fall back to int.from_bytes.
    _unpack: struct.Struct | None = field(default=None, init=False, repr=False, compare=False)
    _keys: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        width = self.size // len(self.divisors)
        code = {1: "b", 2: "h", 4: "i"}.get(width)
        if code is not None:
            fmt = ">" + (code if self.signed else code.upper()) * len(self.divisors)
            object.__setattr__(self, "_unpack", struct.Struct(fmt))
        # Output keys for the 256 possible channels, so decoding formats no strings.
        object.__setattr__(self, "_keys", tuple(f"{self.name}_{channel}" for channel in range(256)))

    def key(self, channel: int) -> str:
        return self._keys[channel]

    def read(self, payload: bytes, start: int) -> Any:
        unpack = self._unpack
        if unpack is not None and not self.fields:
            raw: int = unpack.unpack_from(payload, start)[0]
            divisor = self.divisors[0]
            return raw if divisor == 1 else raw / divisor
        if unpack is not None:
            raws: tuple[int, ...] = unpack.unpack_from(payload, start)
        else:
            width = self.size // len(self.divisors)
            raws = tuple(
                int.from_bytes(payload[at : at + width], "big", signed=self.signed)
                for at in range(start, start + self.size, width)
            )
        # Integer resolutions stay integers (counts, lux, Unix time); scaled ones become floats.
        values = [raw if divisor == 1 else raw / divisor for raw, divisor in zip(raws, self.divisors, strict=True)]
        if not self.fields:
            return values[0]
        return dict(zip(self.fields, values, strict=True))


# Sizes, signedness and resolutions follow the myDevices Cayenne LPP table (IPSO id - 3200) and the
# ElectronicCats CayenneLPP library (src/CayenneLPP.h: *_SIZE, *_MULT, getTypeSigned). Names of the
# original types are those of The Things Stack (pkg/messageprocessors/cayennelpp/keys.go); names of the
# extended types are ElectronicCats' getTypeName. Type 122 (load) is left out on purpose: no public
# reference implementation defines its size and resolution consistently.
TYPES: dict[int, LppType] = {
    0: LppType("digital_in", 1, False, (1,)),
    1: LppType("digital_out", 1, False, (1,)),
    2: LppType("analog_in", 2, True, (100,)),
    3: LppType("analog_out", 2, True, (100,)),
    100: LppType("generic", 4, False, (1,)),
    101: LppType("luminosity", 2, False, (1,)),  # lx
    102: LppType("presence", 1, False, (1,)),
    103: LppType("temperature", 2, True, (10,)),  # 0.1 °C
    104: LppType("relative_humidity", 1, False, (2,)),  # 0.5 %
    113: LppType("accelerometer", 6, True, (1000, 1000, 1000), ("x", "y", "z")),  # 0.001 G per axis
    115: LppType("barometric_pressure", 2, False, (10,)),  # 0.1 hPa
    116: LppType("voltage", 2, False, (100,)),  # 0.01 V
    117: LppType("current", 2, False, (1000,)),  # 0.001 A
    118: LppType("frequency", 4, False, (1,)),  # Hz
    120: LppType("percentage", 1, False, (1,)),  # %
    121: LppType("altitude", 2, True, (1,)),  # m
    125: LppType("concentration", 2, False, (1,)),  # ppm
    128: LppType("power", 2, False, (1,)),  # W
    130: LppType("distance", 4, False, (1000,)),  # 0.001 m
    131: LppType("energy", 4, False, (1000,)),  # 0.001 kWh
    132: LppType("direction", 2, False, (1,)),  # degrees
    133: LppType("time", 4, False, (1,)),  # Unix time, s
    134: LppType("gyrometer", 6, True, (100, 100, 100), ("x", "y", "z")),  # 0.01 °/s per axis
    135: LppType("colour", 3, False, (1, 1, 1), ("r", "g", "b")),
    136: LppType("gps", 9, True, (10_000, 10_000, 100), ("latitude", "longitude", "altitude")),
    142: LppType("switch", 1, False, (1,)),
}


def decode(payload: bytes, fport: int) -> DecodeResult:
    """Decode a Cayenne LPP frame; any fPort is accepted because LPP is self-describing.

    Byte offsets in messages count from 0. A broken frame returns the fields decoded before the fault
    beside the error, which helps whoever reads the dead letter.
    """
    data: dict[str, Any] = {}
    warnings: list[str] = []
    if not payload:
        return DecodeResult(data=data, warnings=("empty payload",))
    offset, length = 0, len(payload)
    while offset < length:
        channel = payload[offset]
        if offset + 1 >= length:
            return _failure(
                f"truncated payload: channel {channel} at byte {offset} has no type byte", data, warnings
            )
        type_id = payload[offset + 1]
        lpp = TYPES.get(type_id)
        if lpp is None:
            return _failure(
                f"unknown type {type_id} (0x{type_id:02x}) at byte {offset + 1} (channel {channel})",
                data,
                warnings,
            )
        start = offset + 2
        if start + lpp.size > length:
            return _failure(
                f"truncated payload: {lpp.name} on channel {channel} at byte {offset} needs {lpp.size} "
                f"data bytes, {length - start} left",
                data,
                warnings,
            )
        key = lpp.key(channel)
        if key in data:
            warnings.append(f"{key} appears twice; kept the value at byte {offset}")
        data[key] = lpp.read(payload, start)
        offset = start + lpp.size
    return DecodeResult(data=data, warnings=tuple(warnings))


def _failure(error: str, data: dict[str, Any], warnings: list[str]) -> DecodeResult:
    return DecodeResult(data=data, warnings=tuple(warnings), errors=(error,))
