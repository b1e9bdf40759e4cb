"""City overview: where water is rising, where the air is bad, which sensors went silent, at a glance."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import geomap
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import geomap as geomap_model

from dashboards.fragments import DISTRICT_OF, HEALTH, beyond, metric_id, up_to
from dashboards.panels import (
    Board,
    VariableSample,
    board_frame,
    device_link,
    kind_variable,
    state_mappings,
    steps,
    table_panel,
    tile_panel,
)
from dashboards.sql import SqlTarget, datasource_ref

__all__ = ["build"]

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
        .description("Green reporting, orange late (missed two intervals), red silent (six intervals). "
                     "The second layer colours each device of the chosen kind by its newest reading in the time "
                     "range, from lowest to highest.")
        .datasource(datasource_ref())
        .with_target(SqlTarget(_DEVICES, ref_id="A", columns=(
            "dev_eui", "name", "zone", "kind", "latitude", "longitude", "state", "last_seen")))
        .with_target(SqlTarget(_LATEST, ref_id="B", columns=(
            "dev_eui", "name", "zone", "latitude", "longitude", "value", "measured_at")))
        .view(geomap.MapViewConfig().id("coords").lat(16).lon(108).zoom(11))
        .controls(geomap.ControlsOptions().show_zoom(True).mouse_wheel_zoom(True).show_scale(True))
        .tooltip(geomap.TooltipOptions().mode(geomap_model.TooltipMode.DETAILS))
        .basemap(common_builders.MapLayerOptions().type("default").name("Basemap"))
        .layers([state_layer, value_layer])
        .mappings(state_mappings())
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
        .title("Active alerts")
        .description("Firing and pending IOC alerts (label service=ioc): water levels, PM2.5, silent devices, "
                     "gateways, dead letters.")
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
        .with_panel(_alerts())
        .with_row(dash.Row("Districts"))
        .with_panel(reporting)
        .with_panel(water)
        .with_panel(pm25)
        .with_panel(uplinks)
        .with_row(dash.Row("Devices needing a visit"))
        .with_panel(silent)
    )
    return Board(UID, "City overview", board.build(), (VariableSample("kind"),), "now-6h")
