"""City overview: each zone's hazard status, where water is rising, where the air is bad, which sensors went silent."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import geomap, table
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import geomap as geomap_model

from dashboards.fragments import DISTRICT_OF, HEALTH, beyond, metric_id, up_to
from dashboards.panels import (
    Board,
    VariableSample,
    board_frame,
    device_link,
    hazard_status_mappings,
    kind_variable,
    state_mappings,
    steps,
    table_panel,
    tile_panel,
    zone_link,
)
from dashboards.sql import SqlTarget, datasource_ref

__all__ = ["ZONE_STATUS", "build"]

UID = "ioc-city"

# Raw uplinks for short ranges, the gateway rollup beyond (as the Network board).
_RAW_UP_TO_S = 6 * 3600

_DEVICES = f"""
    SELECT d.dev_eui, d.name, coalesce(z.name, 'no zone') AS zone, coalesce(d.kind, 'other') AS kind,
           d.latitude, d.longitude, h.health AS state, h.last_seen_at AS last_seen
    FROM devices d
    LEFT JOIN zones z ON z.id = d.zone_id
    {HEALTH}
    WHERE d.status <> 'decommissioned' AND d.latitude IS NOT NULL AND d.longitude IS NOT NULL
"""

# The newest good reading of the kind's main metric inside the time range, one index probe per device.
_LATEST = """
    SELECT d.dev_eui, d.name, coalesce(z.name, 'no zone') AS zone, d.latitude, d.longitude,
           lv.value, lv.time AS measured_at
    FROM devices d
    JOIN device_kinds k ON k.kind = d.kind
    LEFT JOIN zones z ON z.id = d.zone_id
    JOIN LATERAL (
        SELECT m.value, m.time FROM measurements m
        WHERE m.device_id = d.id AND m.metric_id = (SELECT id FROM metrics WHERE name = k.primary_metric)
          AND m.quality = 0 AND $__timeFilter(m.time)
        ORDER BY m.time DESC LIMIT 1
    ) lv ON true
    WHERE d.kind = ${kind:sqlstring} AND d.status <> 'decommissioned' AND d.latitude IS NOT NULL
"""

# Each current district and ward with its worst hazard status and where to draw it. Worst as the platform ranks
# it (operations/status.py): danger > alert > watch > unknown > normal. Rows the evaluator wrote with "no
# stations" (nothing measures that hazard there) count only when a zone has nothing else, and then it is
# "unknown" with the reason "no stations"; a zone without any row (the evaluator never ran, or the zone is
# newer than its last round) is "unknown", "not evaluated". So grey, never green, wherever the platform cannot
# see. The marker sits at the centre of the zone's largest outline ring (zone_rings: (lon, lat) points).
ZONE_STATUS = """
    WITH ranked AS (
        SELECT s.zone_code, s.hazard, s.status, s.since, s.reason,
               row_number() OVER (PARTITION BY s.zone_code ORDER BY s.reason = 'no stations',
                   CASE s.status WHEN 'danger' THEN 4 WHEN 'alert' THEN 3 WHEN 'watch' THEN 2 WHEN 'unknown' THEN 1
                        ELSE 0 END DESC, s.since) AS n,
               string_agg(s.hazard || ': ' || s.status, ', ') FILTER (WHERE s.reason <> 'no stations')
                   OVER (PARTITION BY s.zone_code) AS hazards
        FROM zone_hazard_status s
    )
    SELECT z.code AS zone_code, z.name AS zone, z.level,
           coalesce(r.status, 'unknown') AS status,
           CASE WHEN r.zone_code IS NULL THEN 'not evaluated' WHEN r.reason = 'no stations' THEN 'no stations'
                ELSE coalesce(h.name_vi || ' · ' || h.name_en, r.hazard) END AS worst_hazard,
           coalesce(r.hazards, '') AS hazards, r.since, coalesce(r.reason, 'not evaluated') AS reason,
           z.name || ': ' || coalesce(r.status, 'unknown') AS label,
           (c.centre)[1] AS latitude, (c.centre)[0] AS longitude,
           CASE z.level WHEN 'district' THEN 18 ELSE 11 END AS marker_size
    FROM zones z
    LEFT JOIN ranked r ON r.zone_code = z.code AND r.n = 1
    LEFT JOIN hazards h ON h.code = r.hazard
    LEFT JOIN LATERAL (SELECT @@ g.ring AS centre FROM zone_rings g WHERE g.zone_id = z.id
                       ORDER BY npoints(g.ring) DESC LIMIT 1) c ON true
    WHERE z.valid_to IS NULL AND z.level <> 'city'
    ORDER BY CASE coalesce(r.status, 'unknown') WHEN 'danger' THEN 0 WHEN 'alert' THEN 1 WHEN 'watch' THEN 2
                  WHEN 'unknown' THEN 3 ELSE 4 END, z.level, z.name
"""

_ZONE_STATUS_COLUMNS = ("zone_code", "zone", "level", "status", "worst_hazard", "hazards", "since", "reason",
                        "label", "latitude", "longitude", "marker_size")

_ZONE_TABLE_COLUMNS = ("zone", "zone_code", "level", "status", "worst_hazard", "hazards", "since", "reason")

_DISTRICTS = "SELECT code, name FROM zones WHERE level = 'district' AND valid_to IS NULL"

_REPORTING = f"""
    WITH st AS (
        SELECT {DISTRICT_OF} AS district, h.health AS state
        FROM devices d
        JOIN zones z ON z.id = d.zone_id
        {HEALTH}
        WHERE d.status = 'registered'
    )
    SELECT dz.name AS zone, count(st.state) FILTER (WHERE st.state = 'reporting') AS reporting
    FROM ({_DISTRICTS}) dz LEFT JOIN st ON st.district = dz.code
    GROUP BY dz.name ORDER BY dz.name
"""


def _zone_rollup(metric: str, value_sql: str, alias: str) -> str:
    """A district's value of one metric over the time range, from the hourly zone rollup (wards included).

    Every hour that overlaps the range counts, the one holding its start too: tiles have hourly resolution,
    and a range shorter than an hour still shows the hour it falls in.
    """
    return f"""
        SELECT dz.name AS zone, r.{alias}
        FROM ({_DISTRICTS}) dz
        LEFT JOIN (
            SELECT {DISTRICT_OF} AS district, {value_sql} AS {alias}
            FROM rollup_zone_hourly h JOIN zones z ON z.id = h.zone_id
            WHERE h.metric_id = {metric_id(f"'{metric}'")}
              AND h.bucket > $__timeFrom()::timestamptz - interval '1 hour' AND h.bucket <= $__timeTo()::timestamptz
            GROUP BY 1
        ) r ON r.district = dz.code
        ORDER BY dz.name
    """


# uplinks.zone_id is the zone the frame was taken in. Up to six hours the raw rows over the exact range (the
# BRIN index on plain PostgreSQL, the hypertable's time index otherwise); beyond, the gateway rollup's
# complete hours in the range, divided by their number.
_UPLINKS_PER_HOUR = f"""
    SELECT dz.name AS zone, round(coalesce(r.per_hour, 0)::numeric, 1) AS uplinks_per_hour
    FROM ({_DISTRICTS}) dz
    LEFT JOIN (
        SELECT x.district, sum(x.per_hour) AS per_hour FROM (
            SELECT {DISTRICT_OF} AS district,
                   count(*) / (($__unixEpochTo() - $__unixEpochFrom()) / 3600.0) AS per_hour
            FROM uplinks u JOIN zones z ON z.id = u.zone_id
            WHERE $__timeFilter(u.time) AND {up_to(_RAW_UP_TO_S)}
            GROUP BY 1
            UNION ALL
            SELECT {DISTRICT_OF},
                   sum(h.n) / nullif(extract(epoch FROM date_trunc('hour', $__timeTo()::timestamptz, 'UTC')
                                             - date_trunc('hour', $__timeFrom()::timestamptz, 'UTC')) / 3600, 0)
            FROM rollup_gateway_hourly h JOIN zones z ON z.id = h.zone_id
            WHERE h.bucket >= date_trunc('hour', $__timeFrom()::timestamptz, 'UTC')
              AND h.bucket < date_trunc('hour', $__timeTo()::timestamptz, 'UTC') AND {beyond(_RAW_UP_TO_S)}
            GROUP BY 1
        ) x
        GROUP BY 1
    ) r ON r.district = dz.code
    ORDER BY dz.name
"""

_SILENT = f"""
    SELECT * FROM (
        SELECT d.dev_eui, d.name, coalesce(z.name, 'no zone') AS zone, coalesce(d.kind, 'other') AS kind,
               h.health AS state, h.last_seen_at AS last_seen,
               round(extract(epoch FROM now() - h.last_seen_at)::numeric / 3600, 1) AS silent_hours
        FROM devices d
        LEFT JOIN zones z ON z.id = d.zone_id
        {HEALTH}
        WHERE d.status = 'registered'
    ) s
    WHERE s.state IN ('late', 'silent')
    ORDER BY s.state DESC, s.last_seen
    LIMIT 500
"""


def _map() -> geomap.Panel:
    # Zones first, so device markers draw on top. Colour comes from the status mappings (grey for unknown)
    # and every marker carries its status as text: colour is never the only signal.
    zone_layer = (
        common_builders.MapLayerOptions()
        .type("markers")
        .name("Zone status · Tình trạng khu vực")
        .config({
            "showLegend": True,
            "style": {
                "color": {"field": "status", "fixed": "#8e8e8e"},
                "opacity": 0.55,
                "size": {"field": "marker_size", "fixed": 14, "max": 30, "min": 10},
                "symbol": {"fixed": "img/icons/marker/circle.svg", "mode": "fixed"},
                "text": {"field": "label", "fixed": "", "mode": "field"},
                "textConfig": {"fontSize": 12, "offsetX": 0, "offsetY": -18, "textAlign": "center",
                               "textBaseline": "middle"},
            },
        })
        .location(common_builders.FrameGeometrySource().mode(common.FrameGeometrySourceMode.COORDS)
                  .latitude("latitude").longitude("longitude"))
        .filter_data({"id": "byRefId", "options": "C"})
    )
    state_layer = (
        common_builders.MapLayerOptions()
        .type("markers")
        .name("Device state")
        .config({
            "showLegend": True,
            "style": {
                "color": {"field": "state", "fixed": "dark-green"},
                "opacity": 0.9,
                "size": {"fixed": 6, "max": 12, "min": 4},
                "symbol": {"fixed": "img/icons/marker/circle.svg", "mode": "fixed"},
            },
        })
        .location(common_builders.FrameGeometrySource().mode(common.FrameGeometrySourceMode.COORDS)
                  .latitude("latitude").longitude("longitude"))
        .filter_data({"id": "byRefId", "options": "A"})
    )
    value_layer = (
        common_builders.MapLayerOptions()
        .type("markers")
        .name("Latest reading")
        .config({
            "showLegend": True,
            "style": {
                "color": {"field": "value", "fixed": "blue"},
                "opacity": 0.8,
                "size": {"field": "value", "fixed": 8, "max": 16, "min": 5},
                "symbol": {"fixed": "img/icons/marker/circle.svg", "mode": "fixed"},
            },
        })
        .location(common_builders.FrameGeometrySource().mode(common.FrameGeometrySourceMode.COORDS)
                  .latitude("latitude").longitude("longitude"))
        .filter_data({"id": "byRefId", "options": "B"})
    )
    return (
        geomap.Panel()
        .title("Devices: state, and the latest ${kind:text} reading")
        .description("Large circles: each district's and ward's worst hazard status, labelled: green normal, "
                     "yellow watch, orange alert, red danger, grey unknown (stations silent, no stations, or not "
                     "evaluated). Small dots: green reporting, orange late (missed two intervals), red silent "
                     "(six intervals). "
                     "The second layer colours each device of the chosen kind by its newest reading in the time "
                     "range, from lowest to highest.")
        .datasource(datasource_ref())
        .with_target(SqlTarget(_DEVICES, ref_id="A", columns=(
            "dev_eui", "name", "zone", "kind", "latitude", "longitude", "state", "last_seen")))
        .with_target(SqlTarget(_LATEST, ref_id="B", columns=(
            "dev_eui", "name", "zone", "latitude", "longitude", "value", "measured_at")))
        .with_target(SqlTarget(ZONE_STATUS, ref_id="C", columns=_ZONE_STATUS_COLUMNS))
        .view(geomap.MapViewConfig().id("coords").lat(16).lon(108).zoom(11))
        .controls(geomap.ControlsOptions().show_zoom(True).mouse_wheel_zoom(True).show_scale(True))
        .tooltip(geomap.TooltipOptions().mode(geomap_model.TooltipMode.DETAILS))
        .basemap(common_builders.MapLayerOptions().type("default").name("Basemap"))
        .layers([zone_layer, state_layer, value_layer])
        .mappings([*state_mappings(), *hazard_status_mappings()])
        # Readings are coloured from the lowest to the highest on the map, whatever the kind's unit; the state
        # layer's text values take their colours from the mappings instead.
        .color_scheme(dash.FieldColor().mode(model.FieldColorModeId.CONTINUOUS_GR_YL_RD))
        .height(14).span(16)
    )


def _alerts() -> dash.Panel:
    # Grafana's own alert list; the SDK has no builder for it, so options are the panel's JSON.
    return (
        dash.Panel()
        .type("alertlist")
        .title("Platform watchdogs")
        .description("Firing and pending Grafana alerts (label service=ioc): only what the platform cannot raise "
                     "itself (its evaluator stalled, notifications not delivered). Hazard, device, gateway and "
                     "pipeline alarms are the platform's own: see the Incidents board.")
        .options({
            "alertInstanceLabelFilter": "{service=\"ioc\"}",
            "alertName": "",
            "dashboardAlerts": False,
            "groupBy": [],
            "groupMode": "default",
            "maxItems": 50,
            "sortOrder": 3,
            "stateFilter": {"error": True, "firing": True, "noData": False, "normal": False, "pending": True},
            "viewMode": "list",
        })
        .height(5).span(24)
    )


def _zone_status() -> table.Panel:
    return (
        table_panel("Tình trạng khu vực · Zone status", "Each district's and ward's worst hazard status now, as "
                    "text and colour; grey (unknown) where stations are silent, absent, or not yet evaluated.")
        .with_target(SqlTarget(f"SELECT {', '.join(_ZONE_TABLE_COLUMNS)} FROM ({ZONE_STATUS}) s",
                               columns=_ZONE_TABLE_COLUMNS))
        .mappings(hazard_status_mappings())
        .override_by_name("status", [model.DynamicConfigValue(id_val="custom.cellOptions",
                                                              value={"type": "color-background"})])
        .override_by_name("since", [model.DynamicConfigValue(id_val="unit", value="dateTimeFromNow")])
        .data_links(zone_link())
        .height(14).span(8)
    )


def build() -> Board:
    reporting = (
        tile_panel("Devices reporting", "Registered devices heard within twice their interval, per district.")
        .with_target(SqlTarget(_REPORTING, columns=("zone", "reporting")))
        .thresholds(steps((None, "blue")))
        .height(6).span(6)
    )
    water = (
        tile_panel("Max water level (m)", "Highest good water-level reading in the time range, per district.")
        .with_target(SqlTarget(_zone_rollup("water_level", "max(h.maximum)", "max_water_level_m"),
                               columns=("zone", "max_water_level_m")))
        .unit("lengthm").decimals(2)
        .thresholds(steps((None, "green"), (1.5, "orange"), (2.5, "red")))
        .no_value("no station")
        .height(6).span(6)
    )
    pm25 = (
        tile_panel("Mean PM2.5 (µg/m³)", "Mean of good PM2.5 readings in the time range, per district. "
                   "QCVN 05:2023 24-hour limit: 50.")
        .with_target(SqlTarget(_zone_rollup("pm2_5", "sum(h.total) / nullif(sum(h.n), 0)", "mean_pm2_5"),
                               columns=("zone", "mean_pm2_5")))
        .unit("conμgm3").decimals(1)
        .thresholds(steps((None, "green"), (25.0, "yellow"), (50.0, "orange"), (150.0, "red")))
        .no_value("no sensor")
        .height(6).span(6)
    )
    uplinks = (
        tile_panel("Uplinks per hour", "Frames stored per hour over the time range, by the district they came from.")
        .with_target(SqlTarget(_UPLINKS_PER_HOUR, columns=("zone", "uplinks_per_hour")))
        .thresholds(steps((None, "blue")))
        .height(6).span(6)
    )
    silent = (
        table_panel("Late and silent devices", "Registered devices that missed their reporting interval, "
                    "longest silence first.")
        .with_target(SqlTarget(_SILENT, columns=(
            "dev_eui", "name", "zone", "kind", "state", "last_seen", "silent_hours")))
        .mappings(state_mappings())
        .data_links(device_link())
        .height(10).span(24)
    )
    board = (
        board_frame("City overview", UID, "Where water is rising, where the air is bad, which sensors went silent.",
                    "city", time_from="now-6h", refresh="1m")
        .with_variable(kind_variable(mapped_only=True))
        .with_panel(_map())
        .with_panel(_zone_status())
        .with_row(dash.Row("Districts"))
        .with_panel(reporting)
        .with_panel(water)
        .with_panel(pm25)
        .with_panel(uplinks)
        .with_panel(_alerts())
        .with_row(dash.Row("Devices needing a visit"))
        .with_panel(silent)
    )
    return Board(UID, "City overview", board.build(), (VariableSample("kind"),), "now-6h")
