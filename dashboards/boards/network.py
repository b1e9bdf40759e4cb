"""Network board: which gateways are up, how much each carries, which zones each one covers and how well."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import geomap, timeseries
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import geomap as geomap_model

from dashboards.fragments import GATEWAY_STATUS, beyond, up_to
from dashboards.panels import Board, board_frame, steps, table_panel
from dashboards.sql import SqlTarget, datasource_ref

__all__ = ["build"]

UID = "ioc-network"

# Offline gateways first.
_GATEWAYS = f"""
    SELECT * FROM (
        SELECT g.gateway_eui, coalesce(g.name, g.gateway_eui) AS name, s.status, s.last_seen_at AS last_seen,
               g.chirpstack_state IS NOT NULL AS from_chirpstack, g.latitude, g.longitude
        FROM gateways g
        {GATEWAY_STATUS}
    ) s
    ORDER BY s.status = 'offline' DESC, s.name
"""

# A city's uplinks over six hours are a few hundred thousand rows; beyond that the hourly gateway rollup.
_RAW_UP_TO_S = 6 * 3600

# Both as uplinks per hour, so the axis means the same at every range: the raw query counts per $__interval,
# the rollup's hours fall one per group below an hour's interval and several per group above it.
_PER_GATEWAY = f"""
    SELECT $__timeGroupAlias(u.time, $__interval), coalesce(g.name, g.gateway_eui) AS metric,
           count(*) * 3600000.0 / $__interval_ms AS uplinks_per_hour
    FROM uplinks u JOIN gateways g ON g.id = u.gateway_id
    WHERE $__timeFilter(u.time) AND {up_to(_RAW_UP_TO_S)}
    GROUP BY 1, 2 ORDER BY 1
"""

_PER_GATEWAY_HOURLY = f"""
    SELECT $__timeGroupAlias(r.bucket, $__interval), coalesce(g.name, g.gateway_eui) AS metric,
           sum(r.n) * 3600000.0 / greatest($__interval_ms, 3600000) AS uplinks_per_hour
    FROM rollup_gateway_hourly r JOIN gateways g ON g.id = r.gateway_id
    WHERE $__timeFilter(r.bucket) AND {beyond(_RAW_UP_TO_S)}
    GROUP BY 1, 2 ORDER BY 1
"""

# Which gateway (the one that heard each frame best: uplinks keep the best reception) serves which zone, with
# the link quality there. One table, so both halves are one query: raw rows or the hourly rollup by range.
_COVERAGE = f"""
    SELECT c.* FROM (
        SELECT coalesce(g.name, g.gateway_eui) AS gateway, coalesce(z.name, 'no zone') AS zone,
               count(*) AS uplinks, round(avg(u.rssi)::numeric, 1) AS rssi_avg, min(u.rssi) AS rssi_min,
               round(avg(u.snr)::numeric, 1) AS snr_avg, min(u.snr) AS snr_min
        FROM uplinks u
        JOIN gateways g ON g.id = u.gateway_id
        LEFT JOIN zones z ON z.id = u.zone_id
        WHERE $__timeFilter(u.time) AND {up_to(_RAW_UP_TO_S)}
        GROUP BY 1, 2
        UNION ALL
        SELECT coalesce(g.name, g.gateway_eui), coalesce(z.name, 'no zone'), sum(r.n)::bigint,
               round(sum(r.rssi_total)::numeric / nullif(sum(r.rssi_n), 0), 1), min(r.rssi_min),
               round((sum(r.snr_total) / nullif(sum(r.snr_n), 0))::numeric, 1), min(r.snr_min)
        FROM rollup_gateway_hourly r
        JOIN gateways g ON g.id = r.gateway_id
        LEFT JOIN zones z ON z.id = r.zone_id
        WHERE $__timeFilter(r.bucket) AND {beyond(_RAW_UP_TO_S)}
        GROUP BY 1, 2
    ) c
    ORDER BY c.gateway, c.uplinks DESC
"""

_STATUS_COLOURS: list[model.ValueMapping] = [model.ValueMap(options={
    "online": model.ValueMappingResult(text="online", color="green", index=0),
    "offline": model.ValueMappingResult(text="offline", color="red", index=1),
    "never_seen": model.ValueMappingResult(text="never seen", color="text", index=2),
})]


def build() -> Board:
    gateways = (
        table_panel("Gateways", "Status from ChirpStack when the platform is connected to it, otherwise from "
                    "the last uplink each gateway forwarded (offline after 10 minutes).")
        .with_target(SqlTarget(_GATEWAYS, columns=(
            "gateway_eui", "name", "status", "last_seen", "from_chirpstack", "latitude", "longitude")))
        .mappings(_STATUS_COLOURS)
        .override_by_name("status", [model.DynamicConfigValue(id_val="custom.cellOptions",
                                                              value={"type": "color-background"})])
        .height(10).span(14)
    )
    map_layer = (
        common_builders.MapLayerOptions()
        .type("markers")
        .name("Gateways")
        .config({"showLegend": True, "style": {
            "color": {"field": "status", "fixed": "green"},
            "size": {"fixed": 9},
            "symbol": {"fixed": "img/icons/marker/triangle.svg", "mode": "fixed"},
            "text": {"field": "name", "fixed": "", "mode": "field"},
            "textConfig": {"fontSize": 10, "offsetY": -14, "textAlign": "center", "textBaseline": "bottom"},
        }})
        .location(common_builders.FrameGeometrySource().mode(common.FrameGeometrySourceMode.COORDS)
                  .latitude("latitude").longitude("longitude"))
    )
    gateway_map = (
        geomap.Panel()
        .title("Gateway map")
        .datasource(datasource_ref())
        .with_target(SqlTarget(_GATEWAYS, columns=("gateway_eui", "name", "status", "latitude", "longitude")))
        .view(geomap.MapViewConfig().id("coords").lat(16).lon(108).zoom(11))
        .tooltip(geomap.TooltipOptions().mode(geomap_model.TooltipMode.DETAILS))
        .basemap(common_builders.MapLayerOptions().type("default").name("Basemap"))
        .layers([map_layer])
        .mappings(_STATUS_COLOURS)
        .height(10).span(10)
    )
    traffic = (
        timeseries.Panel()
        .title("Uplinks per gateway")
        .description("Frames each gateway delivered best (ChirpStack keeps the strongest reception). Up to six "
                     "hours from the uplinks, beyond that hourly.")
        .datasource(datasource_ref())
        .with_target(SqlTarget(_PER_GATEWAY, ref_id="A", format_val="time_series",
                               columns=("time", "metric", "uplinks_per_hour")))
        .with_target(SqlTarget(_PER_GATEWAY_HOURLY, ref_id="B", format_val="time_series",
                               columns=("time", "metric", "uplinks_per_hour")))
        .unit("uplinks/h").min(0).fill_opacity(30).span_nulls(True)
        .stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
        .legend(common_builders.VizLegendOptions().display_mode(common.LegendDisplayMode.TABLE)
                .placement(common.LegendPlacement.RIGHT).show_legend(True).calcs(["mean", "max"]))
        .height(9).span(24)
    )
    coverage = (
        table_panel("Coverage", "Which gateway serves which zone (the best reception of each frame), with signal "
                    "quality. RSSI below −120 dBm or SNR below −10 dB is a weak link. Hourly beyond six hours.")
        .with_target(SqlTarget(_COVERAGE, columns=(
            "gateway", "zone", "uplinks", "rssi_avg", "rssi_min", "snr_avg", "snr_min")))
        .override_by_name("rssi_avg", [
            model.DynamicConfigValue(id_val="thresholds", value={"mode": "absolute", "steps": [
                {"color": "red", "value": None}, {"color": "orange", "value": -120}, {"color": "green",
                                                                                       "value": -100}]}),
            model.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
        ])
        .override_by_name("snr_avg", [
            model.DynamicConfigValue(id_val="thresholds", value={"mode": "absolute", "steps": [
                {"color": "red", "value": None}, {"color": "orange", "value": -10}, {"color": "green", "value": 0}]}),
            model.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
        ])
        .thresholds(steps((None, "text")))
        .height(12).span(24)
    )
    board = (
        board_frame("Network", UID, "LoRaWAN gateways: status, traffic, coverage.", "network", time_from="now-24h",
                    refresh="1m")
        .with_panel(gateways)
        .with_panel(gateway_map)
        .with_panel(traffic)
        .with_panel(coverage)
    )
    return Board(UID, "Network", board.build(), (), "now-24h")
