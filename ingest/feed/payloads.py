"""What the open MQTT feed publishes: topics, SenML packs of readings, device status and zone summaries.

Pure: no I/O and no clock, so the feed, its AsyncAPI document and the tests build payloads the same way.
A reading is a SenML pack (RFC 8428) whose records resolve to ``urn:dev:deveui:{dev_eui}:{name}``; the
device's name, kind, zone and position ride along as records of their own, so the pack stays valid SenML.
Nothing else of a device (keys, tags, ChirpStack ids, raw payloads) has a place in these payloads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field

from ingest.rows import MEASUREMENT, MEASUREMENT_METRIC_ID, MEASUREMENT_QUALITY, MEASUREMENT_VALUE, MeasurementRow
from ioc_core.metrics import UNIT_NAMES, VOCABULARY, Metric

__all__ = [
    "BASE_NAME",
    "DEFAULT_PREFIX",
    "METADATA_NAMES",
    "DeviceStatus",
    "FeedDevice",
    "Health",
    "HealthChange",
    "HealthCounts",
    "KeyValue",
    "SenMLPacker",
    "ZoneSummary",
    "senml_schemas",
    "status_event",
    "status_topic",
    "summary_topic",
    "valid_prefix",
]

DEFAULT_PREFIX = "ioc/v1"
BASE_NAME = "urn:dev:deveui:{}:"
STATUS_SEGMENT = "_status"
SUMMARY_SEGMENT = "_summary"
# Topic segments: zone codes as ``ioc zones import`` accepts them, kinds as the registry knows them (never
# starting with "_", so a kind cannot collide with the status and summary segments), DevEUIs as stored.
ZONE_CODE = re.compile(r"^[a-z0-9-]{1,64}$")
KIND = re.compile(r"^[a-z][a-z_]{0,63}$")
DEV_EUI = re.compile(r"^[0-9a-f]{16}$")
_PREFIX = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")

# Record names of the device's description in a pack; ``lat``/``lon`` carry SenML's registered units.
METADATA_NAMES = ("name", "kind", "zone", "zone_name", "lat", "lon")


def valid_prefix(prefix: str) -> bool:
    """A topic prefix without wildcards, ``$`` or empty levels."""
    return bool(_PREFIX.fullmatch(prefix))


def reading_topic(prefix: str, zone: str, kind: str, dev_eui: str) -> str:
    return f"{prefix}/{zone}/{kind}/{dev_eui}"


def status_topic(prefix: str, zone: str, dev_eui: str) -> str:
    return f"{prefix}/{zone}/{STATUS_SEGMENT}/{dev_eui}"


def summary_topic(prefix: str, zone: str) -> str:
    return f"{prefix}/{zone}/{SUMMARY_SEGMENT}"


def _json(value: Any) -> bytes:
    return msgspec.json.encode(value)


@dataclass(frozen=True, slots=True)
class FeedDevice:
    """A public, registered device as the feed shows it, with its topic and its pack's fixed pieces."""

    id: int
    dev_eui: str
    name: str
    kind: str
    zone: str
    zone_name: str
    latitude: float | None
    longitude: float | None
    topic: str
    base: bytes
    """The pack's opening up to the base time: '[{"bn":"urn:dev:deveui:…:","bt":'."""
    tail: bytes
    """The device's records and the closing bracket: ',{"n":"name","vs":…},…]'."""

    @classmethod
    def of(cls, prefix: str, id: int, dev_eui: str, name: str, kind: str | None, zone: str | None,
           zone_name: str | None, latitude: float | None, longitude: float | None) -> FeedDevice | None:
        """The device, or None when it cannot be on the feed (no zone or kind, or an unsafe topic segment)."""
        if not (kind and zone and KIND.fullmatch(kind) and ZONE_CODE.fullmatch(zone) and DEV_EUI.fullmatch(dev_eui)):
            return None
        records: list[dict[str, Any]] = [
            {"n": "name", "vs": name}, {"n": "kind", "vs": kind}, {"n": "zone", "vs": zone},
            {"n": "zone_name", "vs": zone_name or zone},
        ]
        if latitude is not None and longitude is not None:
            records += [{"n": "lat", "u": "lat", "v": float(latitude)}, {"n": "lon", "u": "lon", "v": float(longitude)}]
        tail = b"".join(b"," + _json(r) for r in records) + b"]"
        base = b'[{"bn":' + _json(BASE_NAME.format(dev_eui)) + b',"bt":'
        return cls(id, dev_eui, name, kind, zone, zone_name or zone, latitude, longitude,
                   reading_topic(prefix, zone, kind, dev_eui), base, tail)


def _measurement(metric_id: int, value: float) -> MeasurementRow:
    """A measurement row of good quality holding only what a pack uses."""
    row: list[Any] = [None] * len(MEASUREMENT.columns)
    row[MEASUREMENT_METRIC_ID], row[MEASUREMENT_VALUE], row[MEASUREMENT_QUALITY] = metric_id, value, 0
    return tuple(row)


class SenMLPacker:
    """Builds a reading's SenML pack from pre-encoded pieces: the feed runs this for every uplink it publishes.

    Only the numbers are encoded per reading, by msgspec (its float formatting is several times faster than
    ``repr``, with the same shortest round-trip digits); everything else is bytes made once.
    """

    def __init__(self, metrics: Mapping[int, Metric] = VOCABULARY.by_id) -> None:
        # '"n":"temperature","u":"Cel","v":' per metric id.
        self._fields = {m.id: b'"n":' + _json(m.name) + b',"u":' + _json(m.unit) + b',"v":' for m in metrics.values()}
        self._number = msgspec.json.Encoder().encode

    def pack(self, device: FeedDevice, when: float, readings: Iterable[tuple[int, float]]) -> bytes:
        """``readings`` are (metric id, value) of good quality: finite and in range; at least one."""
        packed = self.pack_rows(device, when, (_measurement(m, v) for m, v in readings))
        if packed is None:
            raise ValueError("a SenML pack needs at least one reading")
        return packed

    def pack_rows(self, device: FeedDevice, when: float, rows: Iterable[MeasurementRow]) -> bytes | None:
        """The same from measurement rows (``ingest.rows.MEASUREMENT``), skipping flagged ones (quality ≠ 0);
        None when no row is good. The feed's path, so written for speed."""
        fields, number = self._fields, self._number
        quality, metric, value = MEASUREMENT_QUALITY, MEASUREMENT_METRIC_ID, MEASUREMENT_VALUE
        parts: list[bytes] | None = None
        for r in rows:
            if r[quality]:
                continue
            if parts is None:
                parts = [device.base, number(when), b",", fields[r[metric]], number(float(r[value]))]
            else:
                parts += (b"},{", fields[r[metric]], number(float(r[value])))
        if parts is None:
            return None
        parts += (b"}", device.tail)
        return b"".join(parts)


Health = Literal["reporting", "late", "silent", "never_seen"]
HealthChange = Literal["snapshot", "first_seen", "back", "late", "silent", "never_seen"]
"""The ``event`` of a device status message (not ChirpStack's status event, which reports battery and margin)."""


def status_event(previous: Health | None, health: Health) -> HealthChange:
    """What a change of health means to a subscriber; ``snapshot`` when there is no earlier state to compare."""
    if previous is None:
        return "snapshot"
    if health == "reporting":
        return "back" if previous in ("late", "silent") else "first_seen"
    return health


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeviceStatus(_Payload):
    """A device's health, published (retained) when it changes and when the feed starts."""

    dev_eui: str = Field(pattern=DEV_EUI.pattern, description="the device's LoRaWAN DevEUI, lower-case hex")
    name: str = Field(description="the device's name in the registry")
    kind: str = Field(pattern=KIND.pattern, description="what the device measures (water_level, air_quality, ...)")
    zone: str = Field(pattern=ZONE_CODE.pattern, description="code of the zone the device is in")
    health: Health = Field(description="reporting: within twice its interval; late: up to six times; silent: "
                                       "longer; never_seen: no uplink yet")
    previous: Health | None = Field(description="the health before this change; null in a snapshot")
    event: HealthChange = Field(description="late, silent, back (reporting again after late or silent), "
                                           "first_seen, never_seen, or snapshot (the state at start-up or when the "
                                           "device joins the feed)")
    last_seen: datetime | None = Field(description="event time of the device's latest uplink")
    expected_interval_s: int = Field(gt=0, description="the reporting interval the thresholds are multiples of")
    time: datetime = Field(description="when the feed noticed this state")


class HealthCounts(_Payload):
    reporting: int = 0
    late: int = 0
    silent: int = 0
    never_seen: int = 0
    total: int = 0


class KeyValue(_Payload):
    metric: str = Field(description="vocabulary name of the metric")
    unit: str = Field(description="SenML unit")
    aggregate: Literal["max", "mean", "sum"]
    value: float
    samples: int = Field(ge=1, description="good readings the value is made of")
    hour: datetime = Field(description="start of the hour (UTC) the value covers: the latest of the last two")


class ZoneSummary(_Payload):
    """A zone at a glance, from its public devices only; a district counts its wards' devices too."""

    zone: str = Field(pattern=ZONE_CODE.pattern)
    name: str
    level: Literal["city", "district", "ward"]
    parent: str | None = Field(description="code of the enclosing zone (a ward's district)")
    time: datetime = Field(description="when the summary was computed")
    devices: HealthCounts = Field(description="public devices by health")
    uplinks_last_hour: int = Field(ge=0, description="uplinks of those devices in the last hour")
    key_values: list[KeyValue] = Field(description="the values a zone tile shows (max water level, mean PM2.5, "
                                                   "...) over the latest hour with data in the last two hours")


def senml_schemas(ref_prefix: str = "#/components/schemas/") -> dict[str, dict[str, Any]]:
    """JSON Schemas (draft-07, as AsyncAPI 3 reads them) of a reading pack and its records.

    Made from the vocabulary, so a metric added there is documented here: each name has its one unit, its
    meaning and its valid range.
    """
    names = [m.name for m in VOCABULARY.values()]
    units = sorted({m.unit for m in VOCABULARY.values()} | {"lat", "lon"})
    by_name: list[dict[str, Any]] = [
        {"description": f"{m.name}: {m.description}. Unit {m.unit} ({UNIT_NAMES[m.unit]}); only values from "
                        f"{m.range_text()} are published",
         "if": {"properties": {"n": {"const": m.name}}},
         "then": {"properties": {"u": {"const": m.unit}, "v": {"minimum": m.minimum, "maximum": m.maximum}},
                  "required": ["u", "v"]}}
        for m in VOCABULARY.values()
    ]
    by_name += [
        {"if": {"properties": {"n": {"enum": ["name", "kind", "zone", "zone_name"]}}},
         "then": {"required": ["vs"], "not": {"required": ["u"]}}},
        {"if": {"properties": {"n": {"const": "lat"}}},
         "then": {"properties": {"u": {"const": "lat"}, "v": {"minimum": -90, "maximum": 90}}, "required": ["u", "v"]}},
        {"if": {"properties": {"n": {"const": "lon"}}},
         "then": {"properties": {"u": {"const": "lon"}, "v": {"minimum": -180, "maximum": 180}},
                  "required": ["u", "v"]}},
    ]
    record = {
        "title": "SenMLRecord",
        "description": "One SenML record (RFC 8428). A measurement: n = metric name, u = its SenML unit, v = the "
                       "value (good readings only). The device: name, kind, zone, zone_name as strings (vs), lat and "
                       "lon in SenML's units lat/lon (WGS 84 degrees). The first record carries bn and bt.",
        "type": "object",
        "properties": {
            "bn": {"type": "string", "pattern": r"^urn:dev:deveui:[0-9a-f]{16}:$",
                   "description": "base name: every record's name is bn + n"},
            "bt": {"type": "number", "description": "base time: the reading's time (ChirpStack's event time), "
                                                    "seconds since 1970-01-01 UTC"},
            "n": {"type": "string", "enum": [*names, *METADATA_NAMES]},
            "u": {"type": "string", "enum": units},
            "v": {"type": "number"},
            "vs": {"type": "string"},
        },
        "required": ["n"],
        "additionalProperties": False,
        "oneOf": [{"required": ["v"]}, {"required": ["vs"]}],
        "allOf": by_name,
    }
    pack = {
        "title": "SenMLPack",
        "description": "A device's reading as a SenML pack (application/senml+json): its measurements, then its "
                       "name, kind, zone and position.",
        "type": "array",
        "minItems": 5,
        "items": [{"allOf": [{"$ref": f"{ref_prefix}SenMLRecord"}, {"required": ["bn", "bt"]}]}],
        "additionalItems": {"allOf": [{"$ref": f"{ref_prefix}SenMLRecord"},
                                      {"not": {"anyOf": [{"required": ["bn"]}, {"required": ["bt"]}]}}]},
    }
    return {"SenMLPack": pack, "SenMLRecord": record}
