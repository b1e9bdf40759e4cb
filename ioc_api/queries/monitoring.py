"""Monitoring reads: zone summaries, a device's health, time series, gateways and dead letters.

Long ranges read the hourly rollups (tables in plain PostgreSQL, continuous aggregates in TimescaleDB, the
same columns in both); per-device facts use the ``(device_id, time DESC)`` indexes, one probe per device,
so nothing scans the raw tables by time alone.
"""

from __future__ import annotations

import base64
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from gateways.database import Connection
from ioc_api.queries.devices import HEALTH_JOIN, HEALTH_OF_JOIN, SCOPE_SQL, get_device, scope_params
from ioc_api.schemas.monitoring import (
    Battery,
    DeadLetter,
    DeadLetterPage,
    DeviceOverview,
    FrameLoss,
    GatewayDetail,
    GatewayDevice,
    GatewayPublic,
    HealthCounts,
    KeyValue,
    LatestValue,
    RadioHour,
    Series,
    SeriesPoint,
    ZoneSummary,
)
from ioc_core.errors import Invalid, NotFound
from ioc_core.kinds import ZONE_KEY_VALUES

__all__ = [
    "BUCKETS",
    "dead_letters",
    "device_overview",
    "device_series",
    "gateway_detail",
    "list_gateways",
    "zone_summaries",
]

_QUALITY = {0: "good", 1: "out_of_range", 2: "not_finite"}

BUCKETS: dict[str, timedelta] = {
    "1m": timedelta(minutes=1), "5m": timedelta(minutes=5), "15m": timedelta(minutes=15),
    "30m": timedelta(minutes=30), "1h": timedelta(hours=1), "3h": timedelta(hours=3), "6h": timedelta(hours=6),
    "12h": timedelta(hours=12), "1d": timedelta(days=1), "7d": timedelta(days=7),
}
MAX_POINTS = 20_000


def zone_summaries(conn: Connection, scope: frozenset[str] | None, code: str | None = None) -> list[ZoneSummary]:
    """Every current zone the caller may see; a district's numbers include its wards' devices."""
    params = scope_params(scope, code=code)
    zones = conn.execute(
        """SELECT z.code, z.name, z.level, z.parent_code, z.approximate FROM zones z
           WHERE z.valid_to IS NULL AND (%(code)s::text IS NULL OR z.code = %(code)s)
             AND (%(scope)s::text[] IS NULL OR z.code = ANY(%(scope)s) OR z.parent_code = ANY(%(scope)s))
           ORDER BY CASE z.level WHEN 'city' THEN 0 WHEN 'district' THEN 1 ELSE 2 END, z.code""",
        params,
    ).fetchall()
    if not zones:
        return []
    codes = [z[0] for z in zones]
    counts: dict[str, HealthCounts] = defaultdict(HealthCounts)
    uplinks: dict[str, int] = defaultdict(int)
    # A district's or a zone-scoped caller's devices are named, so only they are looked up in uplinks; the
    # whole city is every device anyway.
    # (A list of ids, not an ARRAY(SELECT ...) argument: PostgreSQL does not inline a function called with a
    # sub-select, and the function run on its own took twice as long.)
    ids = None if code is None and scope is None else [r[0] for r in conn.execute(
        """SELECT d.id FROM devices d WHERE d.status = 'registered'
             AND d.zone_id IN (SELECT id FROM zones WHERE code = ANY(%(codes)s) OR parent_code = ANY(%(codes)s))""",
        {"codes": codes})]
    health_join = HEALTH_JOIN if ids is None else HEALTH_OF_JOIN
    for zone_code, health, devices, recent in conn.execute(
        f"""SELECT c.code, h.health, count(*), sum(h.uplinks_last_hour)
            FROM devices d
            JOIN zones z ON z.id = d.zone_id
            CROSS JOIN LATERAL unnest(array_remove(ARRAY[z.code, z.parent_code], NULL)) AS c(code)
            {health_join}
            WHERE d.status = 'registered' AND c.code = ANY(%(codes)s)
              AND d.zone_id IN (SELECT id FROM zones WHERE code = ANY(%(codes)s) OR parent_code = ANY(%(codes)s))
            GROUP BY 1, 2""",
        {**params, "codes": codes, "ids": ids},
    ).fetchall():
        tally = counts[zone_code]
        setattr(tally, health, int(devices))
        tally.total += int(devices)
        uplinks[zone_code] += int(recent or 0)
    wanted = dict(ZONE_KEY_VALUES)
    values: dict[str, list[KeyValue]] = defaultdict(list)
    for zone_code, metric, unit, bucket, n, total, maximum in conn.execute(
        """WITH r AS (
               SELECT c.code, r.metric_id, r.bucket, sum(r.n)::bigint AS n, sum(r.total) AS total,
                      max(r.maximum) AS maximum
               FROM rollup_zone_hourly r
               JOIN zones z ON z.id = r.zone_id
               CROSS JOIN LATERAL unnest(array_remove(ARRAY[z.code, z.parent_code], NULL)) AS c(code)
               WHERE r.bucket >= date_trunc('hour', now()) - interval '2 hours'
                 AND r.metric_id IN (SELECT id FROM metrics WHERE name = ANY(%(metrics)s))
                 AND c.code = ANY(%(codes)s)
               GROUP BY 1, 2, 3)
           SELECT DISTINCT ON (r.code, r.metric_id) r.code, m.name, m.unit, r.bucket, r.n, r.total, r.maximum
           FROM r JOIN metrics m ON m.id = r.metric_id
           ORDER BY r.code, r.metric_id, r.bucket DESC""",
        {"metrics": list(wanted), "codes": codes},
    ).fetchall():
        aggregate = wanted[metric]
        value = maximum if aggregate == "max" else total if aggregate == "sum" else total / n
        values[zone_code].append(KeyValue(metric=metric, unit=unit, aggregate=aggregate, value=value,
                                          samples=n, bucket=bucket))
    order = {name: i for i, (name, _) in enumerate(ZONE_KEY_VALUES)}
    return [
        ZoneSummary(code=z[0], name=z[1], level=z[2], parent_code=z[3], approximate=z[4], devices=counts[z[0]],
                    uplinks_last_hour=uplinks[z[0]],
                    key_values=sorted(values[z[0]], key=lambda kv: order[kv.metric]))
        for z in zones
    ]


def device_overview(conn: Connection, dev_eui: str, scope: frozenset[str] | None, *,
                    hours: int = 24) -> DeviceOverview:
    device = get_device(conn, dev_eui, scope)
    row = conn.execute("SELECT id FROM devices WHERE dev_eui = %s", (device.dev_eui,)).fetchone()
    assert row is not None
    ident = row[0]
    latest = [
        LatestValue(metric=r[0], unit=r[1], value=r[2], time=r[3], quality=_QUALITY.get(r[4], "out_of_range"))  # type: ignore[arg-type]
        for r in conn.execute(
            """SELECT m.name, m.unit, l.value, l.time, l.quality FROM metrics m
               CROSS JOIN LATERAL (SELECT x.value, x.time, x.quality FROM measurements x
                                   WHERE x.device_id = %s AND x.metric_id = m.id ORDER BY x.time DESC LIMIT 1) l
               ORDER BY m.id""",
            (ident,),
        ).fetchall()
    ]
    by_metric = {v.metric: v for v in latest}
    percent, voltage = by_metric.get("battery"), by_metric.get("battery_voltage")
    if percent or voltage:
        when = max(v.time for v in (percent, voltage) if v is not None)
        battery = Battery(percent=percent.value if percent else None, voltage=voltage.value if voltage else None,
                          time=when, source="payload")
    else:
        status = conn.execute(
            """SELECT battery_level, time FROM device_events
               WHERE device_id = %s AND event_type = 'status' AND battery_level IS NOT NULL
               ORDER BY time DESC LIMIT 1""",
            (ident,),
        ).fetchone()
        battery = (Battery(percent=status[0], voltage=None, time=status[1], source="device_status") if status
                   else Battery(percent=None, voltage=None, time=None, source="none"))
    since = {"id": ident, "hours": hours}
    radio = [
        RadioHour(hour=r[0], uplinks=r[1], rssi_avg=r[2], snr_avg=r[3], rssi_min=r[4], snr_min=r[5])
        for r in conn.execute(
            """SELECT date_trunc('hour', time, 'UTC'), count(*), avg(rssi)::float8, avg(snr)::float8, min(rssi),
                      min(snr)::float8
               FROM uplinks WHERE device_id = %(id)s AND time > now() - make_interval(hours => %(hours)s)
               GROUP BY 1 ORDER BY 1""",
            since,
        ).fetchall()
    ]
    loss = conn.execute(
        """WITH f AS (SELECT f_cnt - lag(f_cnt) OVER (ORDER BY time, f_cnt) AS step FROM uplinks
                      WHERE device_id = %(id)s AND time > now() - make_interval(hours => %(hours)s))
           SELECT count(*), coalesce(sum(step - 1) FILTER (WHERE step > 1), 0), count(*) FILTER (WHERE step < 0)
           FROM f""",
        since,
    ).fetchone()
    assert loss is not None
    received, lost, resets = int(loss[0]), int(loss[1]), int(loss[2])
    errors = conn.execute(
        """SELECT count(*) FROM uplinks WHERE device_id = %(id)s AND time > now() - make_interval(hours => %(hours)s)
             AND decode_status IN ('error', 'no_codec')""",
        since,
    ).fetchone()
    return DeviceOverview(
        device=device, latest=latest, battery=battery, radio=radio,
        frame_loss=FrameLoss(window_hours=hours, received=received, lost=lost, counter_resets=resets,
                             loss_ratio=lost / (received + lost) if received > 1 else None),
        decode_errors_24h=int(errors[0]) if errors else 0,
    )


def device_series(conn: Connection, dev_eui: str, scope: frozenset[str] | None, *, metric: str,
                  start: datetime, end: datetime, bucket: str, timezone: str) -> Series:
    """A metric's values for one device; buckets of an hour or more come from the hourly rollup.

    Buckets start at midnight in the city's time zone (offsets are whole hours in Vietnam, so hourly rollups
    cut days correctly). A bucket that overlaps ``start`` is returned whole, as charts expect. Only
    good-quality values are aggregated, as in the rollups; raw points keep all.
    """
    if end <= start:
        raise Invalid("'to' must be after 'from'", field="to")
    device = get_device(conn, dev_eui, scope)
    found = conn.execute("SELECT id, unit FROM metrics WHERE name = %s", (metric,)).fetchone()
    if found is None:
        raise NotFound(f"metric {metric!r} does not exist", field="metric")
    metric_id, unit = found
    row = conn.execute("SELECT id FROM devices WHERE dev_eui = %s", (device.dev_eui,)).fetchone()
    assert row is not None
    params: dict[str, Any] = {"device": row[0], "metric": metric_id, "start": start, "end": end, "tz": timezone}
    if bucket == "raw":
        rows = conn.execute(
            """SELECT time, 1, value, value, value FROM measurements
               WHERE device_id = %(device)s AND metric_id = %(metric)s AND time >= %(start)s AND time < %(end)s
               ORDER BY time LIMIT %(limit)s""",
            {**params, "limit": MAX_POINTS + 1},
        ).fetchall()
        if len(rows) > MAX_POINTS:
            raise Invalid(f"more than {MAX_POINTS} raw points in this range; choose a bucket such as 1h",
                          field="bucket")
        source = "measurements"
    else:
        width = BUCKETS[bucket]
        if (end - start) / width > MAX_POINTS:
            raise Invalid(f"more than {MAX_POINTS} buckets in this range; choose a wider bucket", field="bucket")
        params["width"] = width
        origin = "('2000-01-01'::timestamp AT TIME ZONE %(tz)s)"
        if width >= timedelta(hours=1):
            source = "rollup_device_hourly"
            query = f"""SELECT date_bin(%(width)s, bucket, {origin}) AS b, sum(n)::bigint, sum(total) / sum(n),
                               min(minimum), max(maximum)
                        FROM rollup_device_hourly
                        WHERE device_id = %(device)s AND metric_id = %(metric)s
                          AND bucket >= date_bin(%(width)s, %(start)s, {origin}) AND bucket < %(end)s
                        GROUP BY 1 ORDER BY 1"""
        else:
            source = "measurements"
            query = f"""SELECT date_bin(%(width)s, time, {origin}) AS b, count(*), avg(value), min(value), max(value)
                        FROM measurements
                        WHERE device_id = %(device)s AND metric_id = %(metric)s AND quality = 0
                          AND time >= date_bin(%(width)s, %(start)s, {origin}) AND time < %(end)s
                        GROUP BY 1 ORDER BY 1"""
        rows = conn.execute(query, params).fetchall()
    return Series(dev_eui=device.dev_eui, metric=metric, unit=unit, bucket=bucket, source=source,  # type: ignore[arg-type]
                  start=start, end=end,
                  points=[SeriesPoint(time=r[0], n=r[1], mean=r[2], min=r[3], max=r[4]) for r in rows])


_GATEWAYS = """
WITH heard AS (
    SELECT u.gateway_id, d.id AS device_id, count(*) AS uplinks, max(u.time) AS last_heard,
           avg(u.rssi)::float8 AS rssi, avg(u.snr)::float8 AS snr
    FROM devices d
    LEFT JOIN zones z ON z.id = d.zone_id
    -- OFFSET 0 keeps this a per-device index probe; without it the planner may scan all uplinks.
    CROSS JOIN LATERAL (SELECT x.gateway_id, x.time, x.rssi, x.snr FROM uplinks x
                        WHERE x.device_id = d.id AND x.time > now() - make_interval(hours => %(hours)s)
                        OFFSET 0) u
    WHERE u.gateway_id IS NOT NULL AND {scope}
    GROUP BY 1, 2)
"""


def list_gateways(conn: Connection, scope: frozenset[str] | None, *, hours: int = 1) -> list[GatewayPublic]:
    """Every gateway, with its status (the database's gateway_status(), as the boards and the alert rule read
    it) and what the last ``hours`` of uplinks show about it."""
    rows = conn.execute(
        _GATEWAYS.format(scope=SCOPE_SQL) + """
        SELECT g.gateway_eui, g.name, g.latitude, g.longitude, s.status, s.last_seen_at, g.chirpstack_synced_at,
               count(h.device_id), coalesce(sum(h.uplinks), 0),
               (sum(h.rssi * h.uplinks) / nullif(sum(h.uplinks), 0))::float8,
               (sum(h.snr * h.uplinks) / nullif(sum(h.uplinks), 0))::float8
        FROM gateways g JOIN gateway_status() s ON s.gateway_id = g.id LEFT JOIN heard h ON h.gateway_id = g.id
        GROUP BY g.id, s.status, s.last_seen_at ORDER BY g.gateway_eui""",
        scope_params(scope, hours=hours),
    ).fetchall()
    return [
        GatewayPublic(gateway_eui=r[0], name=r[1], latitude=r[2], longitude=r[3], state=r[4],
                      last_seen_at=r[5], chirpstack_synced_at=r[6], devices_heard=r[7], uplinks=r[8], rssi_avg=r[9],
                      snr_avg=r[10])
        for r in rows
    ]


def gateway_detail(conn: Connection, gateway_eui: str, scope: frozenset[str] | None, *,
                   hours: int = 24) -> GatewayDetail:
    gateway = next((g for g in list_gateways(conn, scope, hours=hours) if g.gateway_eui == gateway_eui.lower()),
                   None)
    if gateway is None:
        raise NotFound(f"gateway {gateway_eui} is unknown", field="gateway_eui")
    rows = conn.execute(
        _GATEWAYS.format(scope=SCOPE_SQL) + """
        SELECT d.dev_eui, d.name, z.code, h.uplinks, h.last_heard, h.rssi, h.snr
        FROM heard h JOIN gateways g ON g.id = h.gateway_id JOIN devices d ON d.id = h.device_id
        LEFT JOIN zones z ON z.id = d.zone_id
        WHERE g.gateway_eui = %(eui)s ORDER BY h.rssi DESC NULLS LAST""",
        scope_params(scope, hours=hours, eui=gateway_eui.lower()),
    ).fetchall()
    devices = [GatewayDevice(dev_eui=r[0], name=r[1], zone=r[2], uplinks=r[3], last_heard_at=r[4], rssi_avg=r[5],
                             snr_avg=r[6]) for r in rows]
    return GatewayDetail(gateway=gateway, devices=devices)


def dead_letters(conn: Connection, *, stage: str | None, unresolved: bool, before_id: int | None,
                 limit: int) -> DeadLetterPage:
    rows = conn.execute(
        """SELECT id, received_at, stage, reason, topic, dev_eui, payload, replay_count, resolved_at
           FROM dead_letters
           WHERE (%(stage)s::text IS NULL OR stage = %(stage)s)
             AND (NOT %(unresolved)s OR resolved_at IS NULL)
             AND (%(before)s::bigint IS NULL OR id < %(before)s)
           ORDER BY id DESC LIMIT %(limit)s""",
        {"stage": stage, "unresolved": unresolved, "before": before_id, "limit": limit},
    ).fetchall()
    total = conn.execute("SELECT count(*) FROM dead_letters WHERE resolved_at IS NULL").fetchone()
    items = [
        DeadLetter(id=r[0], received_at=r[1], stage=r[2], reason=r[3], topic=r[4], dev_eui=r[5],
                   payload_base64=base64.b64encode(bytes(r[6])).decode(), payload_bytes=len(r[6]),
                   replay_count=r[7], resolved_at=r[8])
        for r in rows
    ]
    return DeadLetterPage(items=items, total_open=int(total[0]) if total else 0,
                          next_before_id=items[-1].id if len(items) == limit else None)
