"""Alert rules as code: water above a station's levels, sustained PM2.5, silent devices, gateways, dead letters.

Every rule's SQL returns one row per alert instance: text columns become the instance's labels and the one
numeric column its value (Grafana's "numeric data" from a table). Per-device and per-kind thresholds live in
the database (``alert_thresholds``, ``device_kinds``, ``devices.expected_interval_s``), so changing one needs
no new rule: each SQL returns ``value - threshold`` and the rule fires above zero. Silent devices and offline
gateways are those the database's ``device_health()`` and ``gateway_status()`` say are, as everywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

from grafana_foundation_sdk.builders import alerting, expr
from grafana_foundation_sdk.models import alerting as alert_model
from grafana_foundation_sdk.models import dashboard as model

from dashboards.fragments import GATEWAY_STATUS, HEALTH
from dashboards.sql import DATASOURCE_UID, SqlTarget
from ioc_core.kinds import SILENT_AFTER

__all__ = [
    "DEAD_LETTERS_FLOOR",
    "FOLDER_UID",
    "GROUP",
    "LOOK_BACK_S",
    "AlertRule",
    "all_rules",
    "rule_group",
    "water_levels",
]

FOLDER_UID = "ioc"
GROUP = "IOC city"
# Fewer than this many dead letters in 15 minutes never page anyone, however quiet the previous day was.
DEAD_LETTERS_FLOOR = 10


@dataclass(frozen=True, slots=True)
class AlertRule:
    """A rule's builder and its SQL target, kept for tests and benchmarks that run the SQL."""

    uid: str
    title: str
    target: SqlTarget
    window_s: int
    rule: alerting.Rule


# The threshold row for device d: its own row wins over its kind's as a whole, so a station that sets only
# an alert level has no danger rule rather than its kind's danger level (which may lie below its alert level).
# Callers keep rows where the level they use is set.
def _threshold(metrics: str, level: str) -> str:
    return (f"CROSS JOIN LATERAL (SELECT th.metric, th.{level} AS level, th.sustained_s FROM alert_thresholds th "
            f"WHERE th.metric IN ({metrics}) AND (th.device_id = d.id OR (th.device_id IS NULL AND th.kind = d.kind)) "
            "ORDER BY th.device_id IS NULL, th.metric LIMIT 1) t")


# How far back the reading rules look at most: their query's time range in Grafana, and a constant bound on
# the readings' time beside each device's own bound. The per-device bound (three reporting intervals, a
# threshold's sustained period) differs from row to row of a LATERAL join, so TimescaleDB can only exclude
# chunks with it at run time, once per device: 0.2 ms per station across a month of daily chunks, 150-200 ms
# per evaluation with 5,000 devices, plus planning every chunk. $__timeFrom() is a literal timestamp in the
# SQL Grafana sends, so the planner drops all but the last day's chunks before it plans the rest (25-50 ms).
# The price is a cap: readings older than a day never count. A station reporting less often than every eight
# hours (three intervals past a day) cannot warn of a flood in time anyway, and a PM2.5 threshold's sustained
# period longer than a day is taken as a day.
LOOK_BACK_S = 86400


# Every registered level sensor (water levels, street floods) with its two levels, its newest good reading and
# the value the water rules compare: the lower of the two newest good readings, so one spike does not page
# anyone; within three reporting intervals (at least 30 minutes), so a station that stops reporting leaves the
# water rules for the silence rule. The demo's district table counts the stations above their levels from it.
# ``since`` bounds the readings' time as LOOK_BACK_S explains: the rules pass Grafana's $__timeFrom().
def water_levels(since: str) -> str:
    return f"""
    SELECT d.dev_eui, d.name AS device, coalesce(z.name, 'no zone') AS zone, z.code AS zone_code, t.metric,
           t.alert_above, t.danger_above, lv.value, lv.newest
    FROM devices d
    LEFT JOIN zones z ON z.id = d.zone_id
    JOIN device_intervals i ON i.device_id = d.id
    CROSS JOIN LATERAL (SELECT th.metric, th.alert_above, th.danger_above FROM alert_thresholds th
        WHERE th.metric IN ('water_level', 'flood_depth')
          AND (th.device_id = d.id OR (th.device_id IS NULL AND th.kind = d.kind))
        ORDER BY th.device_id IS NULL, th.metric LIMIT 1) t
    JOIN LATERAL (
        SELECT min(r.value) AS value, (array_agg(r.value ORDER BY r.time DESC))[1] AS newest FROM (
            SELECT m.value, m.time FROM measurements m
            WHERE m.device_id = d.id AND m.metric_id = (SELECT id FROM metrics WHERE name = t.metric)
              AND m.quality = 0 AND m.time > now() - make_interval(secs => greatest(1800, 3 * i.interval_s))
              AND m.time > {since}
            ORDER BY m.time DESC LIMIT 2
        ) r
    ) lv ON lv.value IS NOT NULL
    WHERE d.status = 'registered'
"""


def _water(level: str) -> str:
    return f"""
        SELECT w.dev_eui, w.device, w.zone, w.metric, w.{level}::text AS threshold_m, w.value - w.{level} AS excess_m
        FROM ({water_levels("$__timeFrom()")}) w
        WHERE w.{level} IS NOT NULL
    """


# The mean over the threshold's sustained period (at least 15 minutes), from at least two readings.
_PM25 = f"""
    SELECT d.dev_eui, d.name AS device, coalesce(z.name, 'no zone') AS zone, t.level::text AS limit_ugm3,
           (greatest(t.sustained_s, 900) / 60)::text AS minutes, a.mean - t.level AS excess_ugm3
    FROM devices d
    LEFT JOIN zones z ON z.id = d.zone_id
    {_threshold("'pm2_5'", "alert_above")}
    JOIN LATERAL (
        SELECT avg(m.value) AS mean, count(*) AS n FROM measurements m
        WHERE m.device_id = d.id AND m.metric_id = (SELECT id FROM metrics WHERE name = 'pm2_5')
          AND m.quality = 0 AND m.time > now() - make_interval(secs => greatest(t.sustained_s, 900))
          AND m.time > $__timeFrom()
    ) a ON a.n >= 2
    WHERE d.status = 'registered' AND t.level IS NOT NULL
"""

# Devices already late are returned with how far into their silence they are; the rule fires past the
# silent point, where device_health() calls a device silent for the API, the feed and the boards too: a
# "silence" threshold row in seconds (the device's, else its kind's), else SILENT_AFTER times the expected
# interval.
_SILENT = f"""
    SELECT d.dev_eui, d.name AS device, coalesce(z.name, 'no zone') AS zone, coalesce(d.kind, 'other') AS kind,
           round(h.silent_after_s)::text AS allowed_s,
           extract(epoch FROM now() - h.last_seen_at) / h.silent_after_s AS silence
    FROM devices d
    LEFT JOIN zones z ON z.id = d.zone_id
    {HEALTH}
    WHERE d.status = 'registered' AND h.health IN ('late', 'silent')
"""

_GATEWAY = f"""
    SELECT g.gateway_eui, coalesce(g.name, g.gateway_eui) AS gateway,
           CASE WHEN s.status = 'offline' THEN 1 ELSE 0 END AS offline
    FROM gateways g
    {GATEWAY_STATUS}
"""

_DEAD_LETTERS = f"""
    SELECT s.stage, s.recent - greatest({DEAD_LETTERS_FLOOR}, 2 * s.baseline) AS excess
    FROM (
        SELECT l.stage,
               count(*) FILTER (WHERE l.received_at > now() - interval '15 minutes') AS recent,
               count(*) FILTER (WHERE l.received_at <= now() - interval '15 minutes') / 96.0 AS baseline
        FROM dead_letters l
        WHERE l.received_at > now() - interval '24 hours 15 minutes'
        GROUP BY l.stage
    ) s
"""


def _rule(uid: str, title: str, sql: str, *, columns: tuple[str, ...], window_s: int, above: float,
          for_: str, severity: str, summary: str, description: str,
          no_data: str = "OK") -> AlertRule:
    target = SqlTarget(sql, columns=columns)
    query = (
        alerting.Query("A")
        .datasource_uid(DATASOURCE_UID)
        .relative_time_range(alert_model.RelativeTimeRange(from_val=window_s, to=0))
        .model(target)
    )
    threshold = (
        alerting.Query("B")
        .datasource_uid("__expr__")
        .model(
            expr.TypeThreshold()
            .ref_id("B")
            .expression("A")
            .datasource(model.DataSourceRef(type_val="__expr__", uid="__expr__"))
            .conditions([expr.ExprTypeThresholdConditions().evaluator(
                expr.ExprTypeThresholdConditionsEvaluator().type("gt").params([above]))])
        )
    )
    rule = (
        alerting.Rule(title)
        .uid(uid)
        .folder_uid(FOLDER_UID)
        .rule_group(GROUP)
        .org_id(1)
        .condition("B")
        .queries([query, threshold])
        .for_val(for_)
        .no_data_state("OK" if no_data == "OK" else "NoData")
        .exec_err_state("Error")
        .labels({"severity": severity, "service": "ioc"})
        .annotations({"summary": summary, "description": description})
    )
    return AlertRule(uid, title, target, window_s, rule)


def all_rules() -> list[AlertRule]:
    return [
        _rule("ioc-water-alert", "Water above alert level", _water("alert_above"),
              columns=("dev_eui", "device", "zone", "metric", "threshold_m", "excess_m"), window_s=LOOK_BACK_S,
              above=0,
              for_="0s", severity="warning",
              summary="{{ $labels.device }} ({{ $labels.zone }}): {{ $labels.metric }} "
                      "{{ humanize $values.A.Value }} m above its alert level of {{ $labels.threshold_m }} m",
              description="The two newest readings (within three reporting intervals, at least 30 minutes and "
                          "at most a day) "
                          "above the station's alert level (alert_thresholds: the device's own row, else its "
                          "kind's)."),
        _rule("ioc-water-danger", "Water above danger level", _water("danger_above"),
              columns=("dev_eui", "device", "zone", "metric", "threshold_m", "excess_m"), window_s=LOOK_BACK_S,
              above=0,
              for_="0s", severity="critical",
              summary="{{ $labels.device }} ({{ $labels.zone }}): {{ $labels.metric }} "
                      "{{ humanize $values.A.Value }} m above its danger level of {{ $labels.threshold_m }} m",
              description="The two newest readings above the station's danger level."),
        _rule("ioc-pm25-sustained", "PM2.5 above the limit", _PM25,
              columns=("dev_eui", "device", "zone", "limit_ugm3", "minutes", "excess_ugm3"), window_s=LOOK_BACK_S,
              above=0,
              for_="5m", severity="warning",
              summary="{{ $labels.device }} ({{ $labels.zone }}): PM2.5 mean over {{ $labels.minutes }} min is "
                      "{{ humanize $values.A.Value }} µg/m³ above {{ $labels.limit_ugm3 }}",
              description="Mean PM2.5 over the threshold's sustained period (15 minutes to a day) above its "
                          "limit."),
        _rule("ioc-device-silent", "Device silent", _SILENT,
              columns=("dev_eui", "device", "zone", "kind", "allowed_s", "silence"), window_s=600, above=1,
              for_="0s", severity="warning",
              summary="{{ $labels.device }} ({{ $labels.zone }}, {{ $labels.kind }}) silent for "
                      "{{ humanize $values.A.Value }}× its allowed {{ $labels.allowed_s }} s",
              description=f"No uplink for longer than allowed: a 'silence' threshold in seconds (the device's, "
                          f"else its kind's), else {SILENT_AFTER:g} times the expected interval (the device's own, "
                          "else its kind's)."),
        _rule("ioc-gateway-offline", "Gateway offline", _GATEWAY,
              columns=("gateway_eui", "gateway", "offline"), window_s=600, above=0,
              for_="5m", severity="critical",
              summary="Gateway {{ $labels.gateway }} ({{ $labels.gateway_eui }}) is offline",
              description="ChirpStack reports the gateway offline, or (without ChirpStack) it forwarded no "
                          "uplink for ten minutes."),
        _rule("ioc-dead-letters-rising", "Dead letters rising", _DEAD_LETTERS,
              columns=("stage", "excess"), window_s=600, above=0,
              for_="0s", severity="warning",
              summary="{{ $labels.stage }}: dead letters in the last 15 minutes exceed twice the day's normal "
                      "rate by {{ humanize $values.A.Value }}",
              description=f"More than max({DEAD_LETTERS_FLOOR}, twice the previous 24 hours' mean) dead letters "
                          "in 15 minutes at one stage. See the Pipeline board."),
    ]


def rule_group(rules: list[AlertRule]) -> alert_model.RuleGroup:
    return (
        alerting.RuleGroup(GROUP)
        .folder_uid(FOLDER_UID)
        .interval(60)
        .rules([r.rule for r in rules])
        .build()
    )
