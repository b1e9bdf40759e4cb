"""Pipeline board: is the ingest keeping up? Rate, lag, batches, retries and dead letters by reason."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import stat, timeseries
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from dashboards.fragments import LONG_RANGE, SHORT_RANGE
from dashboards.panels import Board, board_frame, line_panel, steps, table_panel
from dashboards.sql import SqlTarget, datasource_ref

__all__ = ["build"]

UID = "ioc-pipeline"

_RATE_COLUMNS = ("time", "received/s", "uplinks stored/s", "measurements/s", "duplicates/s", "dead letters/s")

# Each worker writes one ingest_stats row per interval with counts for that interval: a worker's rate is
# count / interval_s, and the city's rate is the sum over workers of each worker's mean rate in the bucket.
_RATE = f"""
    SELECT w.t AS "time", sum(w.received) AS "received/s", sum(w.uplinks) AS "uplinks stored/s",
           sum(w.measurements) AS "measurements/s", sum(w.duplicates) AS "duplicates/s",
           sum(w.dead_letters) AS "dead letters/s"
    FROM (
        SELECT $__timeGroup(s.time, $__interval) AS t, s.worker,
               avg(s.received / s.interval_s) AS received, avg(s.uplinks / s.interval_s) AS uplinks,
               avg(s.measurements / s.interval_s) AS measurements, avg(s.duplicates / s.interval_s) AS duplicates,
               avg(s.dead_letters / s.interval_s) AS dead_letters
        FROM ingest_stats s
        WHERE $__timeFilter(s.time) AND {SHORT_RANGE}
        GROUP BY 1, 2
    ) w
    GROUP BY 1 ORDER BY 1
"""

# Beyond two days the hourly rollup of the same rows: rate = counts over the seconds the rows covered.
_RATE_HOURLY = f"""
    SELECT w.t AS "time", sum(w.received) AS "received/s", sum(w.uplinks) AS "uplinks stored/s",
           sum(w.measurements) AS "measurements/s", sum(w.duplicates) AS "duplicates/s",
           sum(w.dead_letters) AS "dead letters/s"
    FROM (
        SELECT $__timeGroup(r.bucket, $__interval) AS t, r.worker,
               sum(r.received) / sum(r.seconds) AS received, sum(r.uplinks) / sum(r.seconds) AS uplinks,
               sum(r.measurements) / sum(r.seconds) AS measurements,
               sum(r.duplicates) / sum(r.seconds) AS duplicates, sum(r.dead_letters) / sum(r.seconds) AS dead_letters
        FROM rollup_ingest_hourly r
        WHERE $__timeFilter(r.bucket) AND {LONG_RANGE}
        GROUP BY 1, 2
    ) w
    GROUP BY 1 ORDER BY 1
"""

_LAG_HOURLY = f"""
    SELECT $__timeGroupAlias(r.bucket, $__interval), max(r.lag_ms_p50) AS "lag p50, worst worker",
           max(r.lag_ms_p99) AS "lag p99, worst worker"
    FROM rollup_ingest_hourly r
    WHERE $__timeFilter(r.bucket) AND {LONG_RANGE}
    GROUP BY 1 ORDER BY 1
"""

_BATCHES_HOURLY = f"""
    SELECT $__timeGroupAlias(r.bucket, $__interval), sum(r.batch_messages) / nullif(sum(r.batches), 0) AS "batch size",
           sum(r.batch_ms) / nullif(sum(r.batches), 0) AS "batch ms", sum(r.retries) AS "retries"
    FROM rollup_ingest_hourly r
    WHERE $__timeFilter(r.bucket) AND {LONG_RANGE}
    GROUP BY 1 ORDER BY 1
"""

_LAG = f"""
    SELECT $__timeGroupAlias(s.time, $__interval), max(s.lag_ms_p50) AS "lag p50, worst worker",
           max(s.lag_ms_p99) AS "lag p99, worst worker", max(s.latency_ms_p50) AS "in-worker p50",
           max(s.latency_ms_p99) AS "in-worker p99"
    FROM ingest_stats s
    WHERE $__timeFilter(s.time) AND {SHORT_RANGE}
    GROUP BY 1 ORDER BY 1
"""

_BATCHES = f"""
    SELECT $__timeGroupAlias(s.time, $__interval),
           sum(s.batch_size_avg * s.batches) / nullif(sum(s.batches), 0) AS "batch size",
           sum(s.batch_ms_avg * s.batches) / nullif(sum(s.batches), 0) AS "batch ms",
           sum(s.retries) AS "retries"
    FROM ingest_stats s
    WHERE $__timeFilter(s.time) AND {SHORT_RANGE}
    GROUP BY 1 ORDER BY 1
"""

# Counts per stats row, so a sum per bucket is the number of events; "disabled" is a level per worker (each
# worker has its own breakers), so the bucket shows the worst worker.
_JS_CODECS = f"""
    SELECT $__timeGroupAlias(s.time, $__interval), sum(s.js_timeouts) AS "timeouts",
           sum(s.js_crashes) AS "crashes", sum(s.js_out_of_memory) AS "out of memory",
           sum(s.codec_refused) AS "refused (codec disabled)", max(s.codecs_disabled) AS "codecs disabled"
    FROM ingest_stats s
    WHERE $__timeFilter(s.time) AND {SHORT_RANGE}
    GROUP BY 1 ORDER BY 1
"""

_DEAD_BY_STAGE = """
    SELECT $__timeGroupAlias(l.received_at, $__interval), l.stage AS metric, count(*) AS dead_letters
    FROM dead_letters l
    WHERE $__timeFilter(l.received_at)
    GROUP BY 1, 2 ORDER BY 1
"""

# Reasons carry details (a DevEUI, a byte count); the text up to the first colon groups them by cause.
_DEAD_BY_REASON = """
    SELECT l.stage, split_part(l.reason, ':', 1) AS reason, count(*) AS dead_letters,
           count(*) FILTER (WHERE l.resolved_at IS NULL) AS open, max(l.received_at) AS last_seen,
           min(l.reason) AS example
    FROM dead_letters l
    WHERE $__timeFilter(l.received_at)
    GROUP BY 1, 2
    ORDER BY 3 DESC
    LIMIT 100
"""

_NOW = """
    SELECT
        (SELECT coalesce(sum(s.uplinks), 0) / 300.0
           FROM ingest_stats s WHERE s.time > now() - interval '5 minutes') AS "uplinks/s (5 min)",
        (SELECT max(s.lag_ms_p99) FROM ingest_stats s WHERE s.time > now() - interval '5 minutes')
            AS "lag p99 (5 min)",
        (SELECT count(DISTINCT s.worker) FROM ingest_stats s WHERE s.time > now() - interval '5 minutes')
            AS "workers",
        (SELECT count(*) FROM dead_letters l WHERE l.resolved_at IS NULL) AS "open dead letters",
        (SELECT coalesce(max(s.codecs_disabled), 0) FROM ingest_stats s WHERE s.time > now() - interval '1 minute')
            AS "JS codecs disabled"
"""


def _line(title: str, description: str) -> timeseries.Panel:
    return line_panel(title, description).height(8).span(12)


def build() -> Board:
    now = (
        stat.Panel()
        .title("Now")
        .description("Last five minutes of every ingest worker.")
        .datasource(datasource_ref())
        .with_target(SqlTarget(_NOW, columns=("uplinks/s (5 min)", "lag p99 (5 min)", "workers",
                                              "open dead letters", "JS codecs disabled")))
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).fields(""))
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .graph_mode(common.BigValueGraphMode.NONE)
        .override_by_name("lag p99 (5 min)", [
            model.DynamicConfigValue(id_val="unit", value="ms"),
            model.DynamicConfigValue(id_val="thresholds", value={"mode": "absolute", "steps": [
                {"color": "green", "value": None}, {"color": "orange", "value": 1000},
                {"color": "red", "value": 10000}]}),
        ])
        .override_by_name("open dead letters", [model.DynamicConfigValue(id_val="thresholds", value={
            "mode": "absolute", "steps": [{"color": "green", "value": None}, {"color": "orange", "value": 1}]})])
        .override_by_name("JS codecs disabled", [model.DynamicConfigValue(id_val="thresholds", value={
            "mode": "absolute", "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}]})])
        .override_by_name("workers", [model.DynamicConfigValue(id_val="thresholds", value={
            "mode": "absolute", "steps": [{"color": "red", "value": None}, {"color": "green", "value": 1}]})])
        .thresholds(steps((None, "green")))
        .height(4).span(24)
    )
    rate = (
        _line("Ingest rate", "Messages received and rows stored per second, all workers. Up to two days from "
              "each worker's 10-second rows, beyond that hourly.")
        .with_target(SqlTarget(_RATE, ref_id="A", format_val="time_series", columns=_RATE_COLUMNS))
        .with_target(SqlTarget(_RATE_HOURLY, ref_id="B", format_val="time_series", columns=_RATE_COLUMNS))
        .unit("reqps")
    )
    lag = (
        _line("Lag", "Commit time minus the event's time (includes ChirpStack and the broker), and time inside "
              "the worker.")
        .with_target(SqlTarget(_LAG, ref_id="A", format_val="time_series", columns=(
            "time", "lag p50, worst worker", "lag p99, worst worker", "in-worker p50", "in-worker p99")))
        .with_target(SqlTarget(_LAG_HOURLY, ref_id="B", format_val="time_series", columns=(
            "time", "lag p50, worst worker", "lag p99, worst worker")))
        .unit("ms")
    )
    batches = (
        _line("Batches", "Mean messages per committed batch and its duration (right axis); retries after database "
              "errors.")
        .with_target(SqlTarget(_BATCHES, ref_id="A", format_val="time_series", columns=(
            "time", "batch size", "batch ms", "retries")))
        .with_target(SqlTarget(_BATCHES_HOURLY, ref_id="B", format_val="time_series", columns=(
            "time", "batch size", "batch ms", "retries")))
        .override_by_name("batch ms", [
            model.DynamicConfigValue(id_val="unit", value="ms"),
            model.DynamicConfigValue(id_val="custom.axisPlacement", value="right"),
        ])
    )
    dead = (
        _line("Dead letters by stage", "Messages the ingest could not store, kept with their bytes for replay.")
        .with_target(SqlTarget(_DEAD_BY_STAGE, format_val="time_series", columns=("time", "metric", "dead_letters")))
        .draw_style(common.GraphDrawStyle.BARS).fill_opacity(60)
        .stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    )
    javascript = (
        _line("JavaScript codecs", "Decodes stopped at the time limit (a stuck worker is killed), worker crashes and "
              "memory exhaustion; uplinks sent straight to dead letters because their codec's breaker is open, "
              "and how many codecs are disabled (right axis). The log names the codecs.")
        .with_target(SqlTarget(_JS_CODECS, format_val="time_series", columns=(
            "time", "timeouts", "crashes", "out of memory", "refused (codec disabled)", "codecs disabled")))
        .override_by_name("codecs disabled", [
            model.DynamicConfigValue(id_val="custom.axisPlacement", value="right"),
            model.DynamicConfigValue(id_val="custom.drawStyle", value="line"),
        ])
        .draw_style(common.GraphDrawStyle.BARS).fill_opacity(60)
    )
    reasons = (
        table_panel("Dead letters by reason", "Grouped by the reason's text before the first colon; "
                    "`ioc deadletters replay` retries them after a fix.")
        .with_target(SqlTarget(_DEAD_BY_REASON, columns=(
            "stage", "reason", "dead_letters", "open", "last_seen", "example")))
        .height(10).span(24)
    )
    board = (
        board_frame("Pipeline", UID, "Is the ingest keeping up?", "pipeline", time_from="now-6h", refresh="30s")
        .with_panel(now)
        .with_panel(rate)
        .with_panel(lag)
        .with_panel(batches)
        .with_panel(dead)
        .with_panel(javascript)
        .with_panel(reasons)
    )
    return Board(UID, "Pipeline", board.build(), (), "now-6h")
