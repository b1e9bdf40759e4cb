"""Alert rules as code: only what the platform cannot raise itself, and the rules it retired.

The platform's operations evaluator raises alarms for hazard levels, silent and flat-lined devices, offline
gateways, rising dead letters and a stalled ingest (operations/, docs/operations.md), and turns them into
incidents that operators acknowledge, with escalation. The Grafana rules that paged for the same conditions
(``RETIRED_RULES``) are removed, so nobody is paged twice: ``ioc dashboards push`` deletes them from a Grafana
that still has them, and the provisioning file lists them under ``deleteRules``. What is left watches the
platform from outside: the evaluator itself, and notifications that do not go out.

Every rule's SQL returns one row per alert instance: text columns become the instance's labels and the one
numeric column its value (Grafana's "numeric data" from a table).
"""

from __future__ import annotations

from dataclasses import dataclass

from grafana_foundation_sdk.builders import alerting, expr
from grafana_foundation_sdk.models import alerting as alert_model
from grafana_foundation_sdk.models import dashboard as model

from dashboards.sql import DATASOURCE_UID, SqlTarget

__all__ = [
    "EVALUATOR_LATE_S",
    "FOLDER_UID",
    "GROUP",
    "LOOK_BACK_S",
    "OUTBOX_OVERDUE_S",
    "RETIRED_RULES",
    "AlertRule",
    "all_rules",
    "rule_group",
    "water_levels",
]

FOLDER_UID = "ioc"
GROUP = "IOC city"

# Rules earlier releases pushed, by uid, with the platform alarm source (alarms.source) that replaced each.
RETIRED_RULES: dict[str, str] = {
    "ioc-water-alert": "hazard (flood: alert)",
    "ioc-water-danger": "hazard (flood: danger)",
    "ioc-pm25-sustained": "hazard (air_quality)",
    "ioc-device-silent": "device_silent",
    "ioc-gateway-offline": "gateway_offline",
    "ioc-dead-letters-rising": "dead_letters",
}

# The evaluator runs a round every IOC_OPERATIONS_INTERVAL_S (default 5 s); five minutes without one is a
# stopped or stuck evaluator, not a slow round.
EVALUATOR_LATE_S = 300
# What "late" reads when no round ever finished, so the rule fires on a platform whose evaluator never ran.
_EVALUATOR_NEVER_S = 10**9
# A notification due this long ago and still pending is stuck: the dispatcher retries within seconds.
OUTBOX_OVERDUE_S = 300


@dataclass(frozen=True, slots=True)
class AlertRule:
    """A rule's builder and its SQL target, kept for tests and benchmarks that run the SQL."""

    uid: str
    title: str
    target: SqlTarget
    window_s: int
    rule: alerting.Rule


# How far back the retired water rules looked at most, kept for the demo screen's district table, which still
# reads water_levels(): a constant bound on the readings' time beside each device's own bound, so TimescaleDB
# drops all but the last day's chunks at plan time. Readings older than a day never count.
LOOK_BACK_S = 86400


# Every registered level sensor (water levels, street floods) with its two levels, its newest good reading and
# the lower of the two newest good readings (one spike counts for nothing), within three reporting intervals
# (at least 30 minutes). The demo's district table counts the stations above their levels from it. ``since``
# bounds the readings' time as LOOK_BACK_S explains.
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


# Seconds since the hazard evaluator last finished a round (zone_hazard_status.evaluated_at is refreshed every
# round, changed or not), once there are registered devices to evaluate.
_EVALUATOR = f"""
    SELECT 'hazard status' AS job,
           coalesce(extract(epoch FROM now() - (SELECT max(s.evaluated_at) FROM zone_hazard_status s)),
                    {_EVALUATOR_NEVER_S}) AS behind_s
    WHERE EXISTS (SELECT 1 FROM devices d WHERE d.status = 'registered')
"""

# Per channel: notifications due more than OUTBOX_OVERDUE_S ago and still pending, and those given up on in
# the last day. The outbox is the dispatcher's own queue, read here from outside the dispatcher.
_OUTBOX = f"""
    SELECT o.channel, count(*) AS stuck
    FROM notification_outbox o
    WHERE (o.state = 'pending' AND o.next_attempt_at < now() - make_interval(secs => {OUTBOX_OVERDUE_S}))
       OR (o.state = 'failed' AND o.created_at > now() - interval '1 day')
    GROUP BY o.channel
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
        _rule("ioc-evaluator-stalled", "Operations evaluator stalled", _EVALUATOR,
              columns=("job", "behind_s"), window_s=600, above=EVALUATOR_LATE_S,
              for_="1m", severity="critical",
              summary="The {{ $labels.job }} evaluator last finished a round {{ humanize $values.A.Value }} s "
                      "ago: no hazard status, alarm, incident or escalation is raised meanwhile",
              description=f"zone_hazard_status.evaluated_at older than {EVALUATOR_LATE_S} s; rounds run every "
                          "IOC_OPERATIONS_INTERVAL_S (default 5 s). Check `ioc operations run` "
                          "(docs/operations.md)."),
        _rule("ioc-notifications-stuck", "Notifications not delivered", _OUTBOX,
              columns=("channel", "stuck"), window_s=600, above=0,
              for_="0s", severity="critical",
              summary="{{ humanize $values.A.Value }} {{ $labels.channel }} notification(s) overdue or given up",
              description=f"notification_outbox rows still pending {OUTBOX_OVERDUE_S} s after they were due, or "
                          "failed in the last day; every attempt is in notification_attempts."),
    ]


def rule_group(rules: list[AlertRule]) -> alert_model.RuleGroup:
    return (
        alerting.RuleGroup(GROUP)
        .folder_uid(FOLDER_UID)
        .interval(60)
        .rules([r.rule for r in rules])
        .build()
    )
