"""ChirpStack v4 integration events rendered to the exact bytes ChirpStack v4.1+ publishes on MQTT.

``json=false`` is the binary protobuf (``SerializeToString``). ``json=true`` follows the pbjson rules of
ChirpStack's Rust API crate (shared/reference/chirpstack-v4.md §2.3), which differ from
``google.protobuf.json_format``:

- proto3 JSON names in ``.proto`` declaration order, compact, oneof members after the plain fields;
- package ``integration`` emits every scalar, enum, repeated and map field even at its default value;
  ``gw`` and ``common`` omit defaults; unset sub-messages are omitted everywhere, never ``null``;
- ``Timestamp`` as chrono's ``to_rfc3339`` (``+00:00``, 0/3/6/9 fraction digits), ``Duration`` as
  ``"<secs>.<frac>s"``, bytes as padded standard base64, enums by name, 64-bit integers as strings;
- floats as serde_json writes them (ryu shortest form, ``61.0`` for integral values, ``null`` if not finite);
  ``Struct`` numbers are doubles, so integers print with ``.0``.

Map keys (``tags``, ``metadata``, ``object``) come out sorted: ChirpStack's Rust ``HashMap`` order is
unspecified, and sorting keeps our output reproducible.
"""

from __future__ import annotations

import base64
import json
import math
import re
import struct
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

__all__ = [
    "format_duration",
    "format_f32",
    "format_f64",
    "format_fraction",
    "format_timestamp",
    "json_string",
    "render",
    "render_json",
    "render_protobuf",
]

# ChirpStack's api/rust/build.rs turns on ``emit_fields`` for this package only.
_EMIT_DEFAULTS_PACKAGES: Final = frozenset({"integration"})

_NEEDS_ESCAPE: Final = re.compile(r'[\x00-\x1f"\\]')

# protobuf's FieldDescriptor.TYPE_* numbers (descriptor.proto), spelled out because the protobuf runtime
# ships no type stubs here; messages and descriptors are typed as Any.
_DOUBLE, _FLOAT, _INT64, _UINT64, _FIXED64, _BOOL, _STRING = 1, 2, 3, 4, 6, 8, 9
_MESSAGE, _BYTES, _ENUM, _SFIXED64, _SINT64 = 11, 12, 14, 16, 18
_INT64_TYPES: Final = frozenset({_INT64, _UINT64, _FIXED64, _SFIXED64, _SINT64})

Message = Any
"""A ``chirpstack_api`` (protobuf) message."""


def render(message: Message, *, json: bool) -> bytes:
    """The MQTT payload for ``[integration.mqtt] json = true|false``."""
    return render_json(message) if json else render_protobuf(message)


def render_protobuf(message: Message) -> bytes:
    return bytes(message.SerializeToString())


def render_json(message: Message, *, fragments: Mapping[str, str] | None = None) -> bytes:
    """The compact JSON ChirpStack v4.1+ writes for ``message`` (pbjson, ``serde_json::to_vec``).

    ``fragments`` maps top-level field names (proto names) to JSON already rendered for them, written in
    the field's place whether or not the message sets it; the simulator reuses each device's ``deviceInfo``.
    """
    parts: list[str] = []
    _message(message, parts, fragments)
    return "".join(parts).encode("utf-8")


# --- scalar formatting (shared with the simulator's templates) ------------------------------------------


def json_string(text: str) -> str:
    """A JSON string literal as serde_json writes it: UTF-8 kept; quote, backslash, controls escaped."""
    if _NEEDS_ESCAPE.search(text) is None:
        return '"' + text + '"'
    return json.dumps(text, ensure_ascii=False)


def format_timestamp(seconds: int, nanos: int = 0) -> str:
    """chrono ``DateTime<Utc>::to_rfc3339()``: ``+00:00`` offset, fraction of 0, 3, 6 or 9 digits."""
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return stamp + format_fraction(nanos) + "+00:00"


def format_duration(seconds: int, nanos: int = 0) -> str:
    """pbjson-types ``Duration``: ``"1s"``, ``"1.500s"``, ``"1457515631.589793238s"``."""
    head = "-0" if seconds == 0 and nanos < 0 else str(seconds)
    return head + format_fraction(abs(nanos)) + "s"


def format_fraction(nanos: int) -> str:
    """The fraction of a second chrono and pbjson write: none, or 3, 6 or 9 digits after the point."""
    if nanos == 0:
        return ""
    if nanos % 1_000_000 == 0:
        return f".{nanos // 1_000_000:03d}"
    if nanos % 1_000 == 0:
        return f".{nanos // 1_000:06d}"
    return f".{nanos:09d}"


def format_f64(value: float) -> str:
    """serde_json's ``f64``: ryu's shortest round-trip digits, ``.0`` if integral, null if not finite."""
    if not math.isfinite(value):
        return "null"
    text = repr(float(value))
    if "e" not in text:
        return text  # repr and ryu agree outside exponent notation
    return _ryu_layout(*_digits(text), decimal_limit=16, small_limit=-5)


def format_f32(value: float) -> str:
    """serde_json's ``f32``: the shortest digits that read back as the same single-precision value."""
    if not math.isfinite(value):
        return "null"
    single = struct.unpack("<f", struct.pack("<f", value))[0]
    text = repr(single)
    if "e" not in text and abs(single) < 1e13 and len(text.strip("-0").replace(".", "")) <= 7:
        # An exact decimal of at most 7 digits: no shorter string reads back as the same f32.
        return text
    if single == 0.0:
        return "-0.0" if math.copysign(1.0, single) < 0 else "0.0"
    for precision in range(1, 10):
        text = f"{single:.{precision - 1}e}"
        if struct.unpack("<f", struct.pack("<f", float(text)))[0] == single:
            break
    return _ryu_layout(*_digits(text), decimal_limit=13, small_limit=-6)


def _digits(scientific: str) -> tuple[bool, str, int]:
    """Sign, significant digits and ryu's ``kk`` from ``d.ddde±x`` (value = 0.DIGITS × 10^kk)."""
    negative = scientific.startswith("-")
    mantissa, _, exponent = scientific.lstrip("-").partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).rstrip("0") or "0"
    return negative, digits, int(exponent) + len(whole)


def _ryu_layout(negative: bool, digits: str, point: int, *, decimal_limit: int, small_limit: int) -> str:
    # ryu's pretty.rs: ``point`` is kk = length + exponent, so 10^(kk-1) <= |v| < 10^kk.
    length = len(digits)
    sign = "-" if negative else ""
    if length <= point <= decimal_limit:
        return f"{sign}{digits}{'0' * (point - length)}.0"
    if 0 < point <= decimal_limit:
        return f"{sign}{digits[:point]}.{digits[point:]}"
    if small_limit < point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if length == 1:
        return f"{sign}{digits}e{point - 1}"
    return f"{sign}{digits[0]}.{digits[1:]}e{point - 1}"


# --- the message walker ----------------------------------------------------------------------------------


def _message(message: Message, out: list[str], fragments: Mapping[str, str] | None = None) -> None:
    descriptor = message.DESCRIPTOR
    special = _WELL_KNOWN.get(descriptor.full_name)
    if special is not None:
        special(message, out)
        return
    emit_defaults = descriptor.file.package in _EMIT_DEFAULTS_PACKAGES
    out.append("{")
    first = True
    oneof_members: list[Any] = []
    for field in descriptor.fields:
        oneof = field.containing_oneof
        if oneof is not None and not _is_synthetic(oneof):
            oneof_members.append(field)
            continue
        if fragments is not None and field.name in fragments:
            first = _key(field, out, first)
            out.append(fragments[field.name])
            continue
        if not _present(message, field, emit_defaults or oneof is not None):
            continue
        first = _key(field, out, first)
        _field_value(message, field, out)
    # pbjson writes the oneofs after all plain fields, whatever their declaration position.
    for field in oneof_members:
        if message.HasField(field.name):
            first = _key(field, out, first)
            _field_value(message, field, out)
    out.append("}")


def _is_synthetic(oneof: Any) -> bool:
    # proto3 ``optional`` wraps the field in a synthetic oneof; pbjson treats it as an Option field.
    return bool(getattr(oneof, "is_synthetic", False))


def _key(field: Any, out: list[str], first: bool) -> bool:
    out.append(('"' if first else ',"') + field.json_name + '":')
    return False


def _present(message: Message, field: Any, emit_defaults: bool) -> bool:
    if field.is_repeated:
        return emit_defaults or len(getattr(message, field.name)) > 0
    if field.message_type is not None or field.has_presence:
        return bool(message.HasField(field.name))
    if emit_defaults:
        return True
    value = getattr(message, field.name)
    return bool(value) if not isinstance(value, float) else value != 0.0


def _field_value(message: Message, field: Any, out: list[str]) -> None:
    value = getattr(message, field.name)
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        _map(field, value, out)
    elif field.is_repeated:
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _single(field, item, out)
        out.append("]")
    else:
        _single(field, value, out)


def _map(field: Any, value: Any, out: list[str]) -> None:
    value_field = field.message_type.fields_by_name["value"]
    out.append("{")
    for index, key in enumerate(sorted(value)):
        if index:
            out.append(",")
        out.append(json_string(_map_key(key)) + ":")
        _single(value_field, value[key], out)
    out.append("}")


def _map_key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


def _single(field: Any, value: Any, out: list[str]) -> None:
    kind = field.type
    if kind == _MESSAGE:
        _message(value, out)
    elif kind == _STRING:
        out.append(json_string(value))
    elif kind == _BOOL:
        out.append("true" if value else "false")
    elif kind == _BYTES:
        out.append('"' + base64.b64encode(value).decode("ascii") + '"')
    elif kind == _ENUM:
        enum_value = field.enum_type.values_by_number.get(value)
        out.append(json_string(enum_value.name) if enum_value is not None else str(value))
    elif kind == _FLOAT:
        out.append(format_f32(value))
    elif kind == _DOUBLE:
        out.append(format_f64(value))
    elif kind in _INT64_TYPES:
        out.append(f'"{value}"')
    else:
        out.append(str(value))


# --- well-known types as pbjson-types writes them --------------------------------------------------------


def _timestamp(message: Any, out: list[str]) -> None:
    out.append('"' + format_timestamp(message.seconds, message.nanos) + '"')


def _duration(message: Any, out: list[str]) -> None:
    out.append('"' + format_duration(message.seconds, message.nanos) + '"')


def _struct(message: Any, out: list[str]) -> None:
    out.append("{")
    for index, key in enumerate(sorted(message.fields)):
        if index:
            out.append(",")
        out.append(json_string(key) + ":")
        _value(message.fields[key], out)
    out.append("}")


def _list_value(message: Any, out: list[str]) -> None:
    out.append("[")
    for index, item in enumerate(message.values):
        if index:
            out.append(",")
        _value(item, out)
    out.append("]")


def _value(message: Any, out: list[str]) -> None:
    kind = message.WhichOneof("kind")
    if kind == "number_value":
        out.append(format_f64(message.number_value))
    elif kind == "string_value":
        out.append(json_string(message.string_value))
    elif kind == "bool_value":
        out.append("true" if message.bool_value else "false")
    elif kind == "struct_value":
        _struct(message.struct_value, out)
    elif kind == "list_value":
        _list_value(message.list_value, out)
    else:
        out.append("null")


_WELL_KNOWN: Final[Mapping[str, Callable[[Any, list[str]], None]]] = {
    "google.protobuf.Timestamp": _timestamp,
    "google.protobuf.Duration": _duration,
    "google.protobuf.Struct": _struct,
    "google.protobuf.ListValue": _list_value,
    "google.protobuf.Value": _value,
}
