"""The rows a batch writes: for uplinks, device events and measurements, each column's name, type and position.

Rows are plain tuples, built positionally on the path every uplink takes (a tuple literal costs a sixth of
a NamedTuple's construction). This module is where their layout is declared: the pipeline builds rows in
these orders, the writer COPYs them with these column names and PostgreSQL types, and the writer, the
open feed and the tests read a field through the position constants below, never through a bare number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "DEVICE_EVENT",
    "EVENT_DEVICE_ID",
    "EVENT_EVENT_TIME",
    "EVENT_KEY",
    "EVENT_TIME",
    "EVENT_TYPE",
    "MEASUREMENT",
    "MEASUREMENT_DEVICE_ID",
    "MEASUREMENT_METRIC_ID",
    "MEASUREMENT_QUALITY",
    "MEASUREMENT_TIME",
    "MEASUREMENT_VALUE",
    "UPLINK",
    "UPLINK_DECODE_STATUS",
    "UPLINK_DEDUPLICATION_ID",
    "UPLINK_DEVICE_ID",
    "UPLINK_EVENT_TIME",
    "UPLINK_GATEWAY_ID",
    "UPLINK_RSSI",
    "UPLINK_SNR",
    "UPLINK_TIME",
    "UPLINK_ZONE_ID",
    "EventRow",
    "MeasurementRow",
    "RowLayout",
    "UplinkRow",
]

UplinkRow = tuple[Any, ...]
"""An ``uplinks`` row in the order of ``UPLINK.columns``."""
EventRow = tuple[Any, ...]
"""A ``device_events`` row in the order of ``DEVICE_EVENT.columns``."""
MeasurementRow = tuple[Any, ...]
"""A ``measurements`` row in the order of ``MEASUREMENT.columns``."""


@dataclass(frozen=True, slots=True)
class RowLayout:
    """The columns of one table's rows, in tuple order, with the PostgreSQL types a binary COPY sends."""

    table: str
    columns: tuple[str, ...]
    types: tuple[str, ...]

    @classmethod
    def of(cls, table: str, *columns: tuple[str, str]) -> RowLayout:
        return cls(table, tuple(name for name, _type in columns), tuple(type_ for _name, type_ in columns))

    def position(self, column: str) -> int:
        return self.columns.index(column)


UPLINK: Final = RowLayout.of(
    "uplinks",
    ("time", "timestamptz"),
    ("received_at", "timestamptz"),
    ("device_id", "int4"),
    ("deduplication_id", "uuid"),
    ("zone_id", "int4"),
    ("dev_addr", "text"),
    ("f_cnt", "int8"),
    ("f_port", "int2"),
    ("dr", "int2"),
    ("confirmed", "bool"),
    ("adr", "bool"),
    ("frequency", "int8"),
    ("spreading_factor", "int2"),
    ("rssi", "int2"),
    ("snr", "float4"),
    ("gateway_count", "int2"),
    ("gateway_id", "int4"),
    ("payload", "bytea"),
    ("codec_id", "text"),
    ("decode_status", "text"),
    ("event_time", "timestamptz"),
)
MEASUREMENT: Final = RowLayout.of(
    "measurements",
    ("time", "timestamptz"),
    ("device_id", "int4"),
    ("zone_id", "int4"),
    ("metric_id", "int2"),
    ("value", "float8"),
    ("quality", "int2"),
)
DEVICE_EVENT: Final = RowLayout.of(
    "device_events",
    ("time", "timestamptz"),
    ("received_at", "timestamptz"),
    ("device_id", "int4"),
    ("event_type", "text"),
    ("event_key", "uuid"),
    ("battery_level", "float4"),
    ("margin", "int2"),
    ("external_power_source", "bool"),
    ("level", "text"),
    ("code", "text"),
    ("details", "jsonb"),
    ("event_time", "timestamptz"),
)

# The positions that code reads; ``event_time`` is the time the event claimed when it was not trusted (else None).
UPLINK_TIME: Final = UPLINK.position("time")
UPLINK_DEVICE_ID: Final = UPLINK.position("device_id")
UPLINK_DEDUPLICATION_ID: Final = UPLINK.position("deduplication_id")
UPLINK_ZONE_ID: Final = UPLINK.position("zone_id")
UPLINK_RSSI: Final = UPLINK.position("rssi")
UPLINK_SNR: Final = UPLINK.position("snr")
UPLINK_GATEWAY_ID: Final = UPLINK.position("gateway_id")
UPLINK_DECODE_STATUS: Final = UPLINK.position("decode_status")
UPLINK_EVENT_TIME: Final = UPLINK.position("event_time")

MEASUREMENT_TIME: Final = MEASUREMENT.position("time")
MEASUREMENT_DEVICE_ID: Final = MEASUREMENT.position("device_id")
MEASUREMENT_METRIC_ID: Final = MEASUREMENT.position("metric_id")
MEASUREMENT_VALUE: Final = MEASUREMENT.position("value")
MEASUREMENT_QUALITY: Final = MEASUREMENT.position("quality")

EVENT_TIME: Final = DEVICE_EVENT.position("time")
EVENT_DEVICE_ID: Final = DEVICE_EVENT.position("device_id")
EVENT_TYPE: Final = DEVICE_EVENT.position("event_type")
EVENT_KEY: Final = DEVICE_EVENT.position("event_key")
EVENT_EVENT_TIME: Final = DEVICE_EVENT.position("event_time")
