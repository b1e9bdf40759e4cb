"""Open-data reads: what is published, the readings of an export window by window, and the catalogue's facts.

Published means a registered device whose ``public`` flag is set, and of its metrics only those its kind
publishes (``ioc_core.kinds``); the flag covers the device's whole history. Nothing here selects tags, keys,
payloads or provisioning.

An export reads its range in time windows, each one short query on a connection taken from the pool and given
back before the rows are sent: a slow download holds no connection and no snapshot between windows, and memory
stays at one window whatever the range. Raw windows adapt their width to the rows they find, and a window
denser than expected stops at a row limit and the next one starts where it stopped; bucketed windows hold a fixed
number of buckets, so never more rows than the limit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from gateways.database import Connection, ConnectionPool
from ioc_core.errors import Invalid
from ioc_core.kinds import KINDS
from ioc_core.metrics import VOCABULARY

__all__ = [
    "MAX_RANGE",
    "WINDOW_ROWS",
    "Bucket",
    "DatasetFacts",
    "Export",
    "PublicDevice",
    "dataset_facts",
    "export_windows",
    "plan_export",
    "published_metrics",
]

Bucket = Literal["raw", "1h", "1d"]

MAX_RANGE = timedelta(days=366)
WINDOW_ROWS = 10_000
"""Rows one window aims at: a few megabytes in memory, a query of some tens of milliseconds."""

_MIN_WINDOW = timedelta(seconds=1)
_INSTANT = timedelta(microseconds=1)
_MAX_WINDOW = timedelta(days=31)
_GROWTH = 4.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WIDTH = {"1h": timedelta(hours=1), "1d": timedelta(days=1)}


def published_metrics(kind: str) -> tuple[str, ...]:
    """The metrics devices of ``kind`` publish: those the kind declares, or all for a kind that declares none."""
    info = KINDS.get(kind)
    if info is None:
        return ()
    return info.metrics or tuple(VOCABULARY)


@dataclass(frozen=True, slots=True)
class PublicDevice:
    id: int
    dev_eui: str
    name: str
    kind: str
    zone: str | None
    """The zone the device is placed in now."""
    interval_s: int


@dataclass(frozen=True, slots=True)
class Export:
    """What an export reads: published (device, metric) pairs over ``[start, end)``."""

    devices: Mapping[int, PublicDevice]
    pairs: tuple[tuple[int, int], ...]
    zones: Mapping[int, str]
    """Every zone row's code, old versions included: a raw reading names the zone it was taken in."""
    start: datetime
    end: datetime
    bucket: Bucket
    timezone: str


def plan_export(conn: Connection, *, zone: str | None, kind: str | None, metric: str | None, dev_eui: str | None,
                start: datetime, end: datetime, bucket: Bucket, timezone: str) -> Export:
    """Check the filters and find the published pairs they select; 422 names the filter at fault."""
    if end <= start:
        raise Invalid("'to' must be after 'from'", field="to")
    if end - start > MAX_RANGE:
        raise Invalid(f"at most {MAX_RANGE.days} days per export; split the range", field="from")
    if metric is not None:
        if metric not in VOCABULARY:
            raise Invalid(f"unknown metric {metric!r}; the catalogue lists each dataset's variables", field="metric")
        if kind is not None and metric not in published_metrics(kind):
            raise Invalid(f"{kind} devices publish {', '.join(published_metrics(kind))}, not {metric}",
                          field="metric")
    if zone is not None and conn.execute("SELECT 1 FROM zones WHERE code = %s LIMIT 1", (zone,)).fetchone() is None:
        raise Invalid(f"unknown zone {zone!r}", field="zone")
    if dev_eui is not None:
        dev_eui = dev_eui.lower()
        found = conn.execute("SELECT 1 FROM devices WHERE dev_eui = %s AND status = 'registered' AND public",
                             (dev_eui,)).fetchone()
        if found is None:  # the same answer for a private device as for none: a private one must not show
            raise Invalid(f"no published device has DevEUI {dev_eui}", field="dev_eui")
    rows = conn.execute(
        """SELECT d.id, d.dev_eui, d.name, d.kind, z.code, d.expected_interval_s
           FROM devices d LEFT JOIN zones z ON z.id = d.zone_id
           WHERE d.status = 'registered' AND d.public AND d.kind = ANY(%(kinds)s)
             AND (%(zone)s::text IS NULL OR z.code = %(zone)s OR z.parent_code = %(zone)s)
             AND (%(eui)s::text IS NULL OR d.dev_eui = %(eui)s)
           ORDER BY d.id""",
        {"kinds": [kind] if kind else sorted(KINDS), "zone": zone, "eui": dev_eui},
    ).fetchall()
    devices = {r[0]: PublicDevice(r[0], r[1], r[2], r[3], r[4], r[5] or KINDS[r[3]].interval_s) for r in rows}
    pairs = tuple(
        (d.id, VOCABULARY[name].id)
        for d in devices.values() for name in published_metrics(d.kind) if metric is None or name == metric
    )
    zones: dict[int, str] = dict(conn.execute("SELECT id, code FROM zones").fetchall()) if pairs else {}
    return Export(devices, pairs, zones, start, end, bucket, timezone)


_RAW = """
SELECT m.time, p.device_id, p.metric_id, m.zone_id, m.value
FROM unnest(%(devices)s::int[], %(metrics)s::int2[]) AS p(device_id, metric_id)
CROSS JOIN LATERAL (SELECT x.time, x.zone_id, x.value FROM measurements x
                    WHERE x.device_id = p.device_id AND x.metric_id = p.metric_id AND x.quality = 0
                      AND x.time >= %(a)s AND x.time < %(b)s) m
ORDER BY m.time, p.device_id, p.metric_id
"""

_HOURLY = """
SELECT r.bucket, p.device_id, p.metric_id, r.n, r.total / r.n, r.minimum, r.maximum
FROM unnest(%(devices)s::int[], %(metrics)s::int2[]) AS p(device_id, metric_id)
CROSS JOIN LATERAL (SELECT bucket, n, total, minimum, maximum FROM rollup_device_hourly r
                    WHERE r.device_id = p.device_id AND r.metric_id = p.metric_id
                      AND r.bucket >= %(a)s AND r.bucket < %(b)s) r
ORDER BY 1, 2, 3
"""

# Days start at midnight in the city's time zone, as in the device series (queries/monitoring.py).
_DAILY = """
SELECT date_bin(%(width)s, r.bucket, %(origin)s) AS day, p.device_id, p.metric_id, sum(r.n)::bigint,
       sum(r.total) / sum(r.n), min(r.minimum), max(r.maximum)
FROM unnest(%(devices)s::int[], %(metrics)s::int2[]) AS p(device_id, metric_id)
CROSS JOIN LATERAL (SELECT bucket, n, total, minimum, maximum FROM rollup_device_hourly r
                    WHERE r.device_id = p.device_id AND r.metric_id = p.metric_id
                      AND r.bucket >= %(a)s AND r.bucket < %(b)s) r
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3
"""


def export_windows(pool: ConnectionPool[Connection], export: Export, *,
                   window_rows: int = WINDOW_ROWS) -> Iterator[list[tuple[Any, ...]]]:
    """The export's rows in time order, one list per window.

    Raw rows are ``(time, device_id, metric_id, zone_id, value)``; bucketed rows are ``(bucket start, device_id,
    metric_id, n, mean, min, max)``. Each window takes a connection from ``pool`` and returns it before yielding.
    """
    if not export.pairs:
        return
    # Array literals, built once: psycopg would otherwise adapt every element again for every window.
    pairs = {"devices": "{" + ",".join(str(p[0]) for p in export.pairs) + "}",
             "metrics": "{" + ",".join(str(p[1]) for p in export.pairs) + "}"}
    if export.bucket == "raw":
        yield from _raw_windows(pool, export, pairs, window_rows)
    else:
        yield from _bucket_windows(pool, export, pairs, window_rows)


def _fetch(pool: ConnectionPool[Connection], query: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    with pool.connection() as conn:
        # Binary results: a third less time turning ten thousand timestamps and doubles into Python.
        return conn.execute(query, params, binary=True).fetchall()


def _raw_windows(pool: ConnectionPool[Connection], export: Export, pairs: dict[str, str],
                 window_rows: int) -> Iterator[list[tuple[Any, ...]]]:
    # First guess from the devices' reporting intervals; then each window's own count sets the next width.
    per_second = sum(1.0 / export.devices[d].interval_s for d, _ in export.pairs)
    width = _clamp(timedelta(seconds=window_rows / per_second))
    cap = window_rows * 2
    limited = _RAW + "LIMIT %(limit)s"
    a = max(export.start, _EPOCH)
    while a < export.end:
        b = export.end if export.end - a <= width else a + width
        rows = _fetch(pool, limited, {**pairs, "a": a, "b": b, "limit": cap + 1})
        if len(rows) > cap:
            # Denser than the last window promised: keep the rows before the last instant read (they are all
            # there, the order being by time), and go on from that instant.
            b = rows[-1][0]
            rows = [r for r in rows if r[0] < b]
            if not rows:  # more than `cap` readings at one instant: read just that instant
                rows = _fetch(pool, _RAW, {**pairs, "a": b, "b": b + _INSTANT})
                a, b = b, b + _INSTANT
        if rows:
            yield rows
        span = b - a
        width = _clamp(span * min(_GROWTH, window_rows / len(rows)) if rows else span * _GROWTH)
        a = b


def _bucket_windows(pool: ConnectionPool[Connection], export: Export, pairs: dict[str, str],
                    window_rows: int) -> Iterator[list[tuple[Any, ...]]]:
    # A bucket holds at most one row per pair, so a window of this many buckets holds at most window_rows rows.
    width = _WIDTH[export.bucket]
    origin = datetime(2000, 1, 1, tzinfo=ZoneInfo(export.timezone)) if export.bucket == "1d" else _EPOCH
    step = width * max(1, window_rows // len(export.pairs))
    a = _bin(max(export.start, _EPOCH + width), width, origin)  # the bucket overlapping 'from' comes whole
    query = _DAILY if export.bucket == "1d" else _HOURLY
    while a < export.end:
        b = export.end if export.end - a <= step else a + step
        rows = _fetch(pool, query, {**pairs, "a": a, "b": b, "width": width, "origin": origin})
        if rows:
            yield rows
        a = b


def _bin(moment: datetime, width: timedelta, origin: datetime) -> datetime:
    """PostgreSQL's ``date_bin``: the start of the bucket holding ``moment``."""
    return origin + ((moment - origin) // width) * width


def _clamp(width: timedelta) -> timedelta:
    return min(max(width, _MIN_WINDOW), _MAX_WINDOW)


@dataclass(frozen=True, slots=True)
class DatasetFacts:
    """A published dataset: a device kind in a zone (a district's dataset includes its wards' devices)."""

    kind: str
    zone: str
    zone_name: str
    zone_level: str
    devices: int
    first_hour: datetime | None
    last_hour: datetime | None
    device_zones: tuple[str, ...]
    """The zones its devices are placed in: the zone itself, or its wards (the live feed's topics name these)."""


def dataset_facts(conn: Connection) -> list[DatasetFacts]:
    """Every (kind, zone) with public devices, with its temporal coverage from the hourly device rollup.

    Coverage is two index probes per published (device, metric) pair: the first and the last hour.
    """
    published = {kind: [VOCABULARY[m].id for m in published_metrics(kind)] for kind in KINDS}
    rows = conn.execute(
        """SELECT d.kind, z.code, z.parent_code, cov.first_hour, cov.last_hour
           FROM devices d
           JOIN zones z ON z.id = d.zone_id
           CROSS JOIN LATERAL (
               SELECT min(f.bucket) AS first_hour, max(l.bucket) AS last_hour
               FROM jsonb_array_elements_text(%(published)s::jsonb -> d.kind) AS pm(id)
               LEFT JOIN LATERAL (SELECT r.bucket FROM rollup_device_hourly r
                                  WHERE r.device_id = d.id AND r.metric_id = pm.id::smallint
                                  ORDER BY r.bucket LIMIT 1) f ON true
               LEFT JOIN LATERAL (SELECT r.bucket FROM rollup_device_hourly r
                                  WHERE r.device_id = d.id AND r.metric_id = pm.id::smallint
                                  ORDER BY r.bucket DESC LIMIT 1) l ON true) cov
           WHERE d.status = 'registered' AND d.public AND d.kind = ANY(%(kinds)s)""",
        {"published": json.dumps(published), "kinds": sorted(KINDS)},
    ).fetchall()
    names = {code: (name, level) for code, name, level in conn.execute(
        """SELECT DISTINCT ON (code) code, name, level FROM zones
           ORDER BY code, valid_to IS NULL DESC, valid_from DESC""").fetchall()}
    tally: dict[tuple[str, str], list[Any]] = {}
    for kind, code, parent, first, last in rows:
        for zone in (code, parent):
            if zone is None or zone not in names:
                continue
            entry = tally.setdefault((kind, zone), [0, None, None, set()])
            entry[0] += 1
            entry[3].add(code)
            if first is not None:
                entry[1] = first if entry[1] is None else min(entry[1], first)
                entry[2] = last if entry[2] is None else max(entry[2], last)
    order = {"city": 0, "district": 1, "ward": 2}
    facts = [DatasetFacts(kind, zone, names[zone][0], names[zone][1], n, first, last, tuple(sorted(codes)))
             for (kind, zone), (n, first, last, codes) in tally.items()]
    return sorted(facts, key=lambda f: (order.get(f.zone_level, 3), f.zone, f.kind))
