"""Device board: one device's every metric, battery, radio link, lost frames and recent events."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from dashboards.annotations import incident_annotation
from dashboards.fragments import HEALTH, LONG_RANGE, SHORT_RANGE, health_of, metric_id
from dashboards.panels import (
    Board,
    VariableSample,
    board_frame,
    line_panel,
    sql_variable,
    state_mappings,
    table_panel,
)
from dashboards.sql import SqlTarget

__all__ = ["build"]

UID = "ioc-device"

_DEVICE_ID = "(SELECT id FROM devices WHERE dev_eui = ${device:sqlstring})"

_INFO = f"""
    SELECT d.dev_eui, d.name, d.status, coalesce(d.kind, 'other') AS kind, coalesce(d.model, '') AS model,
           coalesce(z.name, 'no zone') AS zone, h.health AS state, h.last_seen_at AS last_seen,
           h.interval_s, d.provisioning, d.commissioned_at, d.latitude, d.longitude
    FROM devices d
    LEFT JOIN zones z ON z.id = d.zone_id
    {health_of(f"ARRAY[{_DEVICE_ID}]")}
    WHERE d.dev_eui = ${{device:sqlstring}}
"""

_METRIC_RAW = f"""
    SELECT $__timeGroupAlias(m.time, $__interval), avg(m.value) AS "value"
    FROM measurements m
    WHERE m.device_id = {_DEVICE_ID} AND m.metric_id = {metric_id("${dmetric:sqlstring}")} AND m.quality = 0
      AND $__timeFilter(m.time) AND {SHORT_RANGE}
    GROUP BY 1 ORDER BY 1
"""

_METRIC_ROLLUP = f"""
    SELECT $__timeGroupAlias(r.bucket, $__interval), sum(r.total) / sum(r.n) AS "value"
    FROM rollup_device_hourly r
    WHERE r.device_id = {_DEVICE_ID} AND r.metric_id = {metric_id("${dmetric:sqlstring}")}
      AND $__timeFilter(r.bucket) AND {LONG_RANGE}
    GROUP BY 1 ORDER BY 1
"""

# Battery as the payload reports it (percent or volts) and as the device's status answer gives it.
_BATTERY = f"""
    SELECT $__timeGroupAlias(m.time, $__interval), mt.name AS metric, avg(m.value) AS value
    FROM measurements m JOIN metrics mt ON mt.id = m.metric_id
    WHERE m.device_id = {_DEVICE_ID} AND mt.name IN ('battery', 'battery_voltage') AND m.quality = 0
      AND $__timeFilter(m.time)
    GROUP BY 1, 2
    UNION ALL
    SELECT $__timeGroupAlias(e.time, $__interval), 'status battery' AS metric, avg(e.battery_level) AS value
    FROM device_events e
    WHERE e.device_id = {_DEVICE_ID} AND e.event_type = 'status' AND e.battery_level IS NOT NULL
      AND $__timeFilter(e.time)
    GROUP BY 1, 2
    ORDER BY 1
"""

_SIGNAL = f"""
    SELECT $__timeGroupAlias(u.time, $__interval), avg(u.rssi) AS "RSSI (dBm)", avg(u.snr) AS "SNR (dB)",
           avg(u.gateway_count) AS "gateways"
    FROM uplinks u
    WHERE u.device_id = {_DEVICE_ID} AND $__timeFilter(u.time)
    GROUP BY 1 ORDER BY 1
"""

# A frame counter that jumps by n lost n - 1 frames; one that goes back is a device reset, not a loss.
_FRAME_LOSS = f"""
    SELECT $__timeGroupAlias(g.time, $__interval),
           100.0 * sum(g.gap - 1) / sum(g.gap) AS "frame loss"
    FROM (
        SELECT u.time, u.f_cnt - lag(u.f_cnt) OVER (ORDER BY u.time) AS gap
        FROM uplinks u
        WHERE u.device_id = {_DEVICE_ID} AND $__timeFilter(u.time)
    ) g
    WHERE g.gap > 0
    GROUP BY 1 ORDER BY 1
"""

_EVENTS = f"""
    SELECT * FROM (
        SELECT e.time, e.event_type AS event,
               concat_ws(' ', 'battery ' || e.battery_level || '%', 'margin ' || e.margin || ' dB',
                         e.level, e.code) AS detail,
               e.details::text AS raw
        FROM device_events e
        WHERE e.device_id = {_DEVICE_ID} AND $__timeFilter(e.time)
        UNION ALL
        SELECT u.time, 'decode ' || u.decode_status AS event, 'fCnt ' || u.f_cnt || ', fPort ' || u.f_port AS detail,
               encode(u.payload, 'hex') AS raw
        FROM uplinks u
        WHERE u.device_id = {_DEVICE_ID} AND u.decode_status <> 'ok' AND $__timeFilter(u.time)
        UNION ALL
        SELECT l.received_at, 'dead letter (' || l.stage || ')' AS event, l.reason AS detail, l.topic AS raw
        FROM dead_letters l
        WHERE l.dev_eui = ${{device:sqlstring}} AND $__timeFilter(l.received_at)
    ) ev
    ORDER BY ev.time DESC
    LIMIT 200
"""

# Incidents of the device's zone and of that zone's district, and any whose alarms name the device.
_INCIDENTS_HERE = """
    i.zone_code IN (SELECT unnest(ARRAY[z.code, z.parent_code]) FROM devices d JOIN zones z ON z.id = d.zone_id
                    WHERE d.dev_eui = ${device:sqlstring})
    OR EXISTS (SELECT 1 FROM alarms a WHERE a.incident_id = i.id AND a.device_eui = ${device:sqlstring})
"""

_DEVICES = """
    SELECT d.dev_eui AS __value, d.name || ' · ' || d.dev_eui AS __text
    FROM devices d WHERE d.status <> 'decommissioned'
    ORDER BY d.name
"""

# For checks without Grafana: the device heard last.
_DEVICE_WITH_DATA = f"""
    SELECT d.dev_eui FROM devices d {HEALTH}
    WHERE h.last_seen_at IS NOT NULL AND d.status <> 'decommissioned' ORDER BY h.last_seen_at DESC LIMIT 1
"""

# Metrics the device reported at all: one probe per vocabulary metric on the rollup's primary key.
_DEVICE_METRICS = """
    SELECT mt.name FROM metrics mt
    WHERE EXISTS (SELECT 1 FROM rollup_device_hourly r
                  WHERE r.device_id = (SELECT id FROM devices WHERE dev_eui = ${device:sqlstring})
                    AND r.metric_id = mt.id)
    ORDER BY mt.id
"""


def _line(title: str, description: str) -> timeseries.Panel:
    return line_panel(title, description).show_points(common.VisibilityMode.AUTO)


def build() -> Board:
    info = (
        table_panel("Device", "Registry record and health now.")
        .with_target(SqlTarget(_INFO, columns=(
            "dev_eui", "name", "status", "kind", "model", "zone", "state", "last_seen", "interval_s",
            "provisioning", "commissioned_at", "latitude", "longitude")))
        .mappings(state_mappings())
        .height(4).span(24)
    )
    metric = (
        _line("${dmetric}", "Readings of good quality: raw up to two days, hourly means beyond.")
        .with_target(SqlTarget(_METRIC_RAW, ref_id="A", format_val="time_series", columns=("time", "value")))
        .with_target(SqlTarget(_METRIC_ROLLUP, ref_id="B", format_val="time_series", columns=("time", "value")))
        .repeat("dmetric").repeat_direction("h").max_per_row(3)
        .height(8).span(8)
    )
    battery = (
        _line("Battery", "Battery as the payload reports it (percent or volts) and from LoRaWAN status answers.")
        .with_target(SqlTarget(_BATTERY, format_val="time_series", columns=("time", "metric", "value")))
        .unit("percent")
        .override_by_name("battery_voltage", [
            model.DynamicConfigValue(id_val="unit", value="volt"),
            model.DynamicConfigValue(id_val="custom.axisPlacement", value="right"),
        ])
        .height(8).span(8)
    )
    signal = (
        _line("Radio link", "Mean RSSI and SNR of the best gateway, and how many gateways heard each frame.")
        .with_target(SqlTarget(_SIGNAL, format_val="time_series", columns=("time", "RSSI (dBm)", "SNR (dB)",
                                                                          "gateways")))
        .height(8).span(8)
    )
    loss = (
        _line("Frame loss", "Frames missing from the frame counter sequence, in percent.")
        .with_target(SqlTarget(_FRAME_LOSS, format_val="time_series", columns=("time", "frame loss")))
        .unit("percent").min(0)
        .height(8).span(8)
    )
    events = (
        table_panel("Recent events", "Joins, status answers, ChirpStack logs, decode problems and dead letters.")
        .with_target(SqlTarget(_EVENTS, columns=("time", "event", "detail", "raw")))
        .height(10).span(24)
    )
    variables: list[cogbuilder.Builder[model.VariableModel]] = [
        sql_variable("device", "Device", _DEVICES),
        sql_variable("dmetric", "Metrics", _DEVICE_METRICS, multi=True, include_all=True,
                    hide=model.VariableHide.HIDE_VARIABLE)
        .current(model.VariableOption(selected=True, text="All", value="$__all")),
    ]
    board = (
        board_frame("Device", UID, "One device: readings, battery, radio link, frame loss and events.", "device",
                    time_from="now-7d", refresh="5m")
        .variables(variables)
        .annotation(incident_annotation(_INCIDENTS_HERE))
        .with_panel(info)
        .with_row(dash.Row("Readings"))
        .with_panel(metric)
        .with_row(dash.Row("Health"))
        .with_panel(battery)
        .with_panel(signal)
        .with_panel(loss)
        .with_panel(events)
    )
    return Board(UID, "Device", board.build(), (
        VariableSample("device", prefer=_DEVICE_WITH_DATA), VariableSample("dmetric", multi=True, include_all=True),
    ), "now-7d")
