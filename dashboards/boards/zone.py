"""Zone board: one district or ward and one kind of device: its readings over time, and its devices."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from dashboards.annotations import incident_annotation
from dashboards.fragments import DISTRICT_OF, HEALTH, LONG_RANGE, SHORT_RANGE, ZONE_IDS, health_of, metric_id
from dashboards.panels import (
    Board,
    VariableSample,
    board_frame,
    device_link,
    hazard_status_mappings,
    kind_variable,
    sql_variable,
    state_mappings,
    steps,
    table_panel,
)
from dashboards.sql import SqlTarget, datasource_ref

__all__ = ["build"]

UID = "ioc-zone"

# The zone's devices of the kind as one array, computed once (an InitPlan), so "device_id = ANY(...)" is a
# plain condition on the table read rather than a semi-join. It drives index probes on (device_id, metric_id,
# time) in measurements and (device_id, metric_id, bucket) in the device rollup. In TimescaleDB mode the
# rollup is a continuous aggregate with real-time aggregation: a view that adds, to the materialised hours,
# the raw rows newer than the last refresh, grouped on the fly. A condition can be pushed into that
# grouping only if it is a plain one on a grouping column; "device_id IN (SELECT ...)" is not, so every
# device's recent raw rows of the city were grouped, and the materialised part was read through the
# metric's index (1.8 s for a month; 30 ms with this form and 0010's index).
_ZONE_DEVICES = (f"ARRAY(SELECT d.id FROM devices d WHERE d.zone_id IN {ZONE_IDS} "
                 f"AND d.kind = ${{kind:sqlstring}})")

# Raw readings for short ranges.
_RAW = f"""
    SELECT $__timeGroupAlias(m.time, $__interval), avg(m.value) AS "mean", min(m.value) AS "min",
           max(m.value) AS "max"
    FROM measurements m
    WHERE m.device_id = ANY({_ZONE_DEVICES})
      AND m.metric_id = {metric_id("${metric:sqlstring}")} AND m.quality = 0
      AND $__timeFilter(m.time) AND {SHORT_RANGE}
    GROUP BY 1 ORDER BY 1
"""

# The hourly device rollup for long ranges: weighted means, true extremes.
_ROLLUP = f"""
    SELECT $__timeGroupAlias(r.bucket, $__interval), sum(r.total) / sum(r.n) AS "mean", min(r.minimum) AS "min",
           max(r.maximum) AS "max"
    FROM rollup_device_hourly r
    WHERE r.device_id = ANY({_ZONE_DEVICES})
      AND r.metric_id = {metric_id("${metric:sqlstring}")}
      AND $__timeFilter(r.bucket) AND {LONG_RANGE}
    GROUP BY 1 ORDER BY 1
"""

_DEVICE_STATES = f"""
    SELECT h.health AS state, count(*) AS devices
    FROM devices d
    {health_of(_ZONE_DEVICES)}
    WHERE d.zone_id IN {ZONE_IDS} AND d.kind = ${{kind:sqlstring}} AND d.status = 'registered'
    GROUP BY 1 ORDER BY 1
"""

# Battery: the newer percentage of the payload's and the LoRaWAN status answer's, and the newest voltage.
_DEVICES = f"""
    SELECT d.dev_eui, d.name, coalesce(d.model, '') AS model, z.name AS zone, h.health AS state,
           h.last_seen_at AS last_seen,
           CASE WHEN bp.time IS NULL OR st.time > bp.time THEN st.battery_level ELSE bp.value END AS battery_pct,
           bv.value AS battery_v, lu.rssi, lu.snr
    FROM devices d
    JOIN zones z ON z.id = d.zone_id
    {health_of(_ZONE_DEVICES)}
    LEFT JOIN LATERAL (SELECT u.rssi, u.snr FROM uplinks u WHERE u.device_id = d.id
                       ORDER BY u.time DESC LIMIT 1) lu ON true
    LEFT JOIN LATERAL (SELECT m.value, m.time FROM measurements m WHERE m.device_id = d.id
                       AND m.metric_id = {metric_id("'battery'")} ORDER BY m.time DESC LIMIT 1) bp ON true
    LEFT JOIN LATERAL (SELECT m.value FROM measurements m WHERE m.device_id = d.id
                       AND m.metric_id = {metric_id("'battery_voltage'")} ORDER BY m.time DESC LIMIT 1) bv ON true
    LEFT JOIN LATERAL (SELECT e.battery_level, e.time FROM device_events e WHERE e.device_id = d.id
                       AND e.event_type = 'status' AND e.battery_level IS NOT NULL
                       ORDER BY e.time DESC LIMIT 1) st ON true
    WHERE d.zone_id IN {ZONE_IDS} AND d.kind = ${{kind:sqlstring}} AND d.status <> 'decommissioned'
    ORDER BY d.name
"""

# The zone's status for every hazard the platform knows, "unknown" where it has no row (never "normal").
_HAZARD_STATUS = """
    SELECT h.name_vi || ' · ' || h.name_en AS hazard, coalesce(s.status, 'unknown') AS status,
           coalesce(s.reason, 'not evaluated') AS reason, s.since
    FROM hazards h
    LEFT JOIN zone_hazard_status s ON s.hazard = h.code AND s.zone_code = ${zone:sqlstring}
    ORDER BY h.code
"""

# Incidents of the zone and of its wards (incidents keep zone codes, not boundary versions).
_INCIDENTS_HERE = ("i.zone_code = ${zone:sqlstring} "
                   "OR i.zone_code IN (SELECT code FROM zones WHERE parent_code = ${zone:sqlstring})")

_ZONES = """
    SELECT code AS __value,
           CASE WHEN level = 'ward' THEN '— ' || name ELSE name END AS __text
    FROM zones WHERE valid_to IS NULL AND level <> 'city'
    ORDER BY CASE level WHEN 'ward' THEN parent_code ELSE code END, level, name
"""

# For checks without Grafana: the district of the device heard last, then the kinds heard in it, newest first.
_ZONE_WITH_DATA = f"""
    SELECT {DISTRICT_OF} FROM devices d JOIN zones z ON z.id = d.zone_id {HEALTH}
    WHERE h.last_seen_at IS NOT NULL ORDER BY h.last_seen_at DESC LIMIT 1
"""
_KINDS_WITH_DATA = f"""
    SELECT d.kind FROM devices d {HEALTH}
    WHERE d.zone_id IN {ZONE_IDS} AND h.last_seen_at IS NOT NULL AND d.kind IS NOT NULL
    GROUP BY d.kind ORDER BY max(h.last_seen_at) DESC
"""


def _series() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("${metric}")
        .description("Mean, minimum and maximum over the zone's ${kind} devices. Up to two days from the raw "
                     "readings, beyond that from the hourly rollup.")
        .datasource(datasource_ref())
        .with_target(SqlTarget(_RAW, ref_id="A", format_val="time_series", columns=("time", "mean", "min", "max")))
        .with_target(SqlTarget(_ROLLUP, ref_id="B", format_val="time_series",
                               columns=("time", "mean", "min", "max")))
        .repeat("metric").repeat_direction("h").max_per_row(2)
        .fill_opacity(8).span_nulls(False).show_points(common.VisibilityMode.NEVER)
        .legend(common_builders.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST)
                .placement(common.LegendPlacement.BOTTOM).show_legend(True))
        .height(9).span(12)
    )


def build() -> Board:
    states = (
        stat.Panel()
        .title("Devices by state")
        .description("Registered ${kind} devices in the zone (wards included).")
        .datasource(datasource_ref())
        .with_target(SqlTarget(_DEVICE_STATES, columns=("state", "devices")))
        .reduce_options(common_builders.ReduceDataOptions().values(True).calcs(["lastNotNull"]).fields(""))
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
        .override_by_name("devices", [model.DynamicConfigValue(id_val="color",
                                                               value={"mode": "fixed", "fixedColor": "blue"})])
        .height(4).span(24)
    )
    hazards = (
        stat.Panel()
        .title("Tình trạng · Hazard status")
        .description("The platform's status of the zone for each hazard (docs/operations.md): grey when its "
                     "stations are silent, it has none, or it was not evaluated.")
        .datasource(datasource_ref())
        .with_target(SqlTarget(_HAZARD_STATUS, columns=("hazard", "status", "reason", "since")))
        # Strings: the status is the tile's value, the hazard its name.
        .reduce_options(common_builders.ReduceDataOptions().values(True).calcs(["lastNotNull"])
                        .fields("/^status$/"))
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
        .mappings(hazard_status_mappings())
        .height(4).span(24)
    )
    devices = (
        table_panel("Devices", "Each ${kind} device in the zone: state, last uplink, battery and signal.")
        .with_target(SqlTarget(_DEVICES, columns=(
            "dev_eui", "name", "model", "zone", "state", "last_seen", "battery_pct", "battery_v", "rssi", "snr")))
        .mappings(state_mappings())
        .data_links(device_link())
        .override_by_name("battery_pct", [
            model.DynamicConfigValue(id_val="unit", value="percent"),
            model.DynamicConfigValue(id_val="thresholds", value={
                "mode": "absolute", "steps": [{"color": "red", "value": None}, {"color": "orange", "value": 20},
                                              {"color": "green", "value": 40}]}),
            model.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
        ])
        .override_by_name("last_seen", [model.DynamicConfigValue(id_val="unit", value="dateTimeFromNow")])
        .thresholds(steps((None, "text")))
        .height(12).span(24)
    )
    variables: list[cogbuilder.Builder[model.VariableModel]] = [
        sql_variable("zone", "Zone", _ZONES),
        kind_variable(),
        sql_variable("metric", "Metric",
                    "SELECT unnest(metrics) FROM device_kinds WHERE kind = ${kind:sqlstring}",
                    multi=True, include_all=True)
        .current(model.VariableOption(selected=True, text="All", value="$__all")),
    ]
    board = (
        board_frame("Zone", UID, "One district or ward, one kind of device.", "zone", time_from="now-7d",
                    refresh="5m")
        .variables(variables)
        .annotation(incident_annotation(_INCIDENTS_HERE))
        .with_panel(hazards)
        .with_panel(states)
        .with_panel(_series())
        .with_row(dash.Row("Devices"))
        .with_panel(devices)
    )
    return Board(UID, "Zone", board.build(), (
        VariableSample("zone", prefer=_ZONE_WITH_DATA), VariableSample("kind", prefer=_KINDS_WITH_DATA),
        VariableSample("metric", multi=True, include_all=True),
    ), "now-7d")
