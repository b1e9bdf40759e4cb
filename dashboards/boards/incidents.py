"""Incidents board (Sự cố): open incidents by zone, severity and state, response times, escalations, alarms.

It reads what the operations package writes (gateways/schema/0016_operations.sql): ``incidents`` with their
opened/acknowledged/resolved/escalated times, ``alarms`` while active, ``alarm_severities`` for the order and
the Vietnamese names, and ``zone_hazard_status`` (0015). Grafana shows; operators act through the IOC API,
where roles decide who may act on which zone's incidents.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import dashboard as model

from dashboards.panels import (
    INCIDENT_STATES,
    Board,
    VariableSample,
    board_frame,
    hazard_status_mappings,
    incident_state_mappings,
    line_panel,
    severity_mappings,
    sql_variable,
    steps,
    table_panel,
    tile_panel,
    zone_link,
)
from dashboards.sql import SqlTarget

__all__ = ["INCIDENT_HERE", "OPEN", "UID", "build"]

UID = "ioc-incidents"

# An incident still needing someone: the states before "resolved".
OPEN = "i.state IN ('new', 'acknowledged', 'in_progress')"



def _in_districts(code: str) -> str:
    """True when zone ``code`` lies in a district chosen in ${district}, or in none (a city-wide incident or
    alarm, or one without a zone: everyone's business, so always shown)."""
    return (f"coalesce((SELECT CASE zd.level WHEN 'ward' THEN zd.parent_code ELSE zd.code END FROM zones zd "
            f"WHERE zd.code = {code} AND zd.valid_to IS NULL AND zd.level <> 'city'), '') "
            "IN ('', ${district:sqlstring})")


INCIDENT_HERE = _in_districts("i.zone_code")
_ALARM_HERE = _in_districts("a.zone_code")

_DISTRICTS = """
    SELECT code AS __value, name AS __text FROM zones WHERE level = 'district' AND valid_to IS NULL ORDER BY name
"""

# A zone's current name by its code (codes outlive boundary versions; incidents keep the code).
_ZONE_NAME = "LEFT JOIN zones z ON z.code = i.zone_code AND z.valid_to IS NULL"

# A tile's name is its row's text, so the states are named here as operators say them.
_STATE_ROWS = ", ".join(f"({n}, '{state}', '{INCIDENT_STATES[state][0]}')"
                        for n, state in enumerate(("new", "acknowledged", "in_progress"), 1))

_BY_STATE = f"""
    SELECT s.label AS state, count(i.id) AS incidents
    FROM (VALUES {_STATE_ROWS}) s (ord, state, label)
    LEFT JOIN incidents i ON i.state = s.state AND {OPEN} AND {INCIDENT_HERE}
    GROUP BY s.ord, s.label ORDER BY s.ord
"""

_BY_SEVERITY = f"""
    SELECT v.name_vi || ' · ' || v.name_en AS severity, count(i.id) AS incidents
    FROM alarm_severities v
    LEFT JOIN incidents i ON i.severity = v.severity AND {OPEN} AND {INCIDENT_HERE}
    GROUP BY v.rank, v.name_vi, v.name_en ORDER BY v.rank DESC
"""

_BY_ZONE = f"""
    SELECT coalesce(z.name, i.zone_code) AS zone, i.zone_code, count(*) AS open,
           count(*) FILTER (WHERE i.state = 'new') AS unacknowledged,
           (array_agg(i.severity ORDER BY v.rank DESC))[1] AS worst_severity,
           max(i.escalation_level) AS escalation_level, min(i.opened_at) AS oldest_opened
    FROM incidents i
    JOIN alarm_severities v ON v.severity = i.severity
    {_ZONE_NAME}
    WHERE {OPEN} AND {INCIDENT_HERE}
    GROUP BY 1, 2
    ORDER BY max(v.rank) DESC, count(*) DESC, 1
"""

_OPEN_INCIDENTS = f"""
    SELECT i.id, coalesce(z.name, i.zone_code) AS zone, i.zone_code, i.hazard, i.severity, i.state, i.title,
           i.owner, coalesce(i.assignee, '') AS assignee, i.opened_at,
           round(extract(epoch FROM now() - i.opened_at)::numeric / 60) AS age_min,
           i.acknowledged_at, i.escalation_level, i.escalated_at,
           (SELECT count(*) FROM alarms a WHERE a.incident_id = i.id AND a.state = 'active') AS active_alarms
    FROM incidents i
    JOIN alarm_severities v ON v.severity = i.severity
    {_ZONE_NAME}
    WHERE {OPEN} AND {INCIDENT_HERE}
    ORDER BY v.rank DESC, i.opened_at
    LIMIT 500
"""


def _minutes(later: str) -> str:
    return f"extract(epoch FROM i.{later} - i.opened_at) / 60"


# Incidents opened in the time range; percentile_cont skips those not yet acknowledged or resolved, and the
# counts say how many each figure is taken over.
_RESPONSE = f"""
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY {_minutes("acknowledged_at")}) AS "acknowledge median",
           percentile_cont(0.9) WITHIN GROUP (ORDER BY {_minutes("acknowledged_at")}) AS "acknowledge p90",
           percentile_cont(0.5) WITHIN GROUP (ORDER BY {_minutes("resolved_at")}) AS "resolve median",
           percentile_cont(0.9) WITHIN GROUP (ORDER BY {_minutes("resolved_at")}) AS "resolve p90"
    FROM incidents i
    WHERE $__timeFilter(i.opened_at) AND {INCIDENT_HERE}
"""

_RESPONSE_BY_SEVERITY = f"""
    SELECT v.name_vi || ' · ' || v.name_en AS severity, count(i.id) AS opened,
           count(i.acknowledged_at) AS acknowledged,
           round((percentile_cont(0.5) WITHIN GROUP (ORDER BY {_minutes("acknowledged_at")}))::numeric, 1)
               AS ack_median_min,
           round((percentile_cont(0.9) WITHIN GROUP (ORDER BY {_minutes("acknowledged_at")}))::numeric, 1)
               AS ack_p90_min,
           count(i.resolved_at) AS resolved,
           round((percentile_cont(0.5) WITHIN GROUP (ORDER BY {_minutes("resolved_at")}))::numeric, 1)
               AS resolve_median_min,
           round((percentile_cont(0.9) WITHIN GROUP (ORDER BY {_minutes("resolved_at")}))::numeric, 1)
               AS resolve_p90_min,
           count(i.escalated_at) AS escalated
    FROM alarm_severities v
    LEFT JOIN incidents i ON i.severity = v.severity AND $__timeFilter(i.opened_at) AND {INCIDENT_HERE}
    GROUP BY v.rank, v.name_vi, v.name_en
    ORDER BY v.rank DESC
"""

_OPENED = f"""
    SELECT $__timeGroupAlias(i.opened_at, $__interval), i.severity AS metric, count(*) AS opened
    FROM incidents i
    WHERE $__timeFilter(i.opened_at) AND {INCIDENT_HERE}
    GROUP BY 1, 2 ORDER BY 1
"""

# An incident keeps its latest escalation in escalated_at (and how many in escalation_level); the timeline
# (incident_events) has each one, for the API.
_ESCALATIONS = f"""
    SELECT i.escalated_at AS time, i.id, coalesce(z.name, i.zone_code) AS zone, i.zone_code, i.hazard,
           i.severity, i.state, i.escalation_level, i.owner,
           round(extract(epoch FROM i.escalated_at - i.opened_at)::numeric / 60, 1) AS after_min, i.title
    FROM incidents i
    {_ZONE_NAME}
    WHERE i.escalated_at IS NOT NULL AND $__timeFilter(i.escalated_at) AND {INCIDENT_HERE}
    ORDER BY i.escalated_at DESC
    LIMIT 200
"""

# Every source the alarms table allows, so a source with none shows 0 rather than vanishing.
_ALARM_SOURCES = ("hazard", "device_silent", "device_flatline", "device_out_of_range", "gateway_offline",
                  "dead_letters", "ingest_stalled")
_SOURCE_ROWS = ", ".join(f"({n}, '{source}')" for n, source in enumerate(_ALARM_SOURCES, 1))

_ALARMS_BY_SOURCE = f"""
    SELECT s.source, count(a.id) AS alarms
    FROM (VALUES {_SOURCE_ROWS}) s (ord, source)
    LEFT JOIN alarms a ON a.source = s.source AND a.state = 'active' AND {_ALARM_HERE}
    GROUP BY s.ord, s.source ORDER BY s.ord
"""

_ACTIVE_ALARMS = f"""
    SELECT a.source, a.severity, coalesce(z.name, a.zone_code, '') AS zone, a.zone_code,
           coalesce(a.device_eui, '') AS dev_eui, a.subject, a.message, a.first_seen, a.last_seen, a.count,
           a.incident_id
    FROM alarms a
    JOIN alarm_severities v ON v.severity = a.severity
    LEFT JOIN zones z ON z.code = a.zone_code AND z.valid_to IS NULL
    WHERE a.state = 'active' AND {_ALARM_HERE}
    ORDER BY v.rank DESC, a.last_seen DESC
    LIMIT 500
"""

_ZONE_STATUS = f"""
    SELECT coalesce(z.name, s.zone_code) AS zone, s.zone_code, h.name_vi || ' · ' || h.name_en AS hazard,
           s.status, s.since, s.reason
    FROM zone_hazard_status s
    JOIN hazards h ON h.code = s.hazard
    LEFT JOIN zones z ON z.code = s.zone_code AND z.valid_to IS NULL
    WHERE s.status <> 'normal' AND s.reason <> 'no stations' AND {_in_districts("s.zone_code")}
    ORDER BY CASE s.status WHEN 'danger' THEN 0 WHEN 'alert' THEN 1 WHEN 'watch' THEN 2 ELSE 3 END, s.since
"""


def _colour_text() -> list[model.DynamicConfigValue]:
    return [model.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"})]


def build() -> Board:
    by_state = (
        tile_panel("Sự cố đang mở theo trạng thái · Open incidents by state",
                   "Incidents not yet resolved: new (nobody acknowledged), acknowledged, in progress.")
        .with_target(SqlTarget(_BY_STATE, columns=("state", "incidents")))
        .thresholds(steps((None, "blue")))
        .height(5).span(12)
    )
    by_severity = (
        tile_panel("Sự cố đang mở theo mức độ · Open incidents by severity",
                   "Incidents not yet resolved, by severity (alarm_severities), most severe first.")
        .with_target(SqlTarget(_BY_SEVERITY, columns=("severity", "incidents")))
        .thresholds(steps((None, "blue")))
        .height(5).span(12)
    )
    by_zone = (
        table_panel("Theo khu vực · By zone", "Open incidents per zone: how many, how many nobody acknowledged, "
                    "the worst severity and the highest escalation level.")
        .with_target(SqlTarget(_BY_ZONE, columns=(
            "zone", "zone_code", "open", "unacknowledged", "worst_severity", "escalation_level", "oldest_opened")))
        .mappings(severity_mappings())
        .override_by_name("worst_severity", _colour_text())
        .data_links(zone_link())
        .height(8).span(8)
    )
    open_incidents = (
        table_panel("Sự cố đang mở · Open incidents", "Most severe first, then oldest. Act on them in the IOC API "
                    "(/api/v1/incidents): acknowledge, assign, tick the SOP checklist, resolve.")
        .with_target(SqlTarget(_OPEN_INCIDENTS, columns=(
            "id", "zone", "zone_code", "hazard", "severity", "state", "title", "owner", "assignee", "opened_at",
            "age_min", "acknowledged_at", "escalation_level", "escalated_at", "active_alarms")))
        .mappings([*severity_mappings(), *incident_state_mappings()])
        .override_by_name("severity", _colour_text())
        .override_by_name("state", _colour_text())
        .data_links(zone_link())
        .height(8).span(16)
    )
    response = (
        tile_panel("Thời gian phản hồi (phút) · Response times (minutes)",
                   "Over incidents opened in the time range: minutes from opened to acknowledged and to resolved, "
                   "median and 90th percentile (incidents not yet acknowledged or resolved do not count).")
        .with_target(SqlTarget(_RESPONSE, columns=(
            "acknowledge median", "acknowledge p90", "resolve median", "resolve p90")))
        .unit("m").decimals(1)
        .thresholds(steps((None, "blue")))
        .no_value("no incident")
        .height(5).span(12)
    )
    by_severity_times = (
        table_panel("Phản hồi theo mức độ · Response by severity",
                    "Incidents opened in the time range per severity: acknowledged, resolved and escalated, with "
                    "median and p90 minutes to acknowledge and to resolve.")
        .with_target(SqlTarget(_RESPONSE_BY_SEVERITY, columns=(
            "severity", "opened", "acknowledged", "ack_median_min", "ack_p90_min", "resolved",
            "resolve_median_min", "resolve_p90_min", "escalated")))
        .height(5).span(12)
    )
    opened = (
        line_panel("Sự cố mới · Incidents opened", "Incidents opened per interval, one series per severity.")
        .with_target(SqlTarget(_OPENED, format_val="time_series", columns=("time", "metric", "opened")))
        .height(7).span(12)
    )
    escalations = (
        table_panel("Chuyển cấp gần đây · Recent escalations",
                    "Incidents escalated to the city IOC in the time range (not acknowledged in time, per "
                    "severity: alarm_severities.escalate_after_s), latest first.")
        .with_target(SqlTarget(_ESCALATIONS, columns=(
            "time", "id", "zone", "zone_code", "hazard", "severity", "state", "escalation_level", "owner",
            "after_min", "title")))
        .mappings([*severity_mappings(), *incident_state_mappings()])
        .override_by_name("severity", _colour_text())
        .data_links(zone_link())
        .height(7).span(12)
    )
    alarms_by_source = (
        tile_panel("Cảnh báo đang hoạt động theo nguồn · Active alarms by source",
                   "Alarms the platform raised and that have not cleared: hazard levels, device silent, "
                   "flat-lined or out of range, gateways offline, dead letters rising, ingest stalled.")
        .with_target(SqlTarget(_ALARMS_BY_SOURCE, columns=("source", "alarms")))
        .thresholds(steps((None, "green"), (1.0, "orange")))
        .height(5).span(24)
    )
    alarms = (
        table_panel("Cảnh báo đang hoạt động · Active alarms", "Most severe first, then latest: where, what, since "
                    "when, how often seen, and the incident it belongs to.")
        .with_target(SqlTarget(_ACTIVE_ALARMS, columns=(
            "source", "severity", "zone", "zone_code", "dev_eui", "subject", "message", "first_seen", "last_seen",
            "count", "incident_id")))
        .mappings(severity_mappings())
        .override_by_name("severity", _colour_text())
        .data_links(zone_link())
        .height(9).span(24)
    )
    zone_status = (
        table_panel("Khu vực cần chú ý · Zones not normal",
                    "Zones and hazards at watch, alert or danger, and zones whose stations are silent (unknown), "
                    "from the platform's hazard status.")
        .with_target(SqlTarget(_ZONE_STATUS, columns=("zone", "zone_code", "hazard", "status", "since", "reason")))
        .mappings(hazard_status_mappings())
        .override_by_name("status", [model.DynamicConfigValue(id_val="custom.cellOptions",
                                                              value={"type": "color-background"})])
        .data_links(zone_link())
        .height(7).span(24)
    )
    district = (
        sql_variable("district", "Quận/huyện · District", _DISTRICTS, multi=True, include_all=True)
        .current(model.VariableOption(selected=True, text="All", value="$__all"))
    )
    board = (
        board_frame("Sự cố · Incidents", UID, "Open incidents by zone, severity and state; response times; "
                    "escalations; the platform's active alarms. Choose districts to see a district centre's view.",
                    "incidents", time_from="now-7d", refresh="30s")
        .with_variable(district)
        .with_panel(by_state)
        .with_panel(by_severity)
        .with_panel(by_zone)
        .with_panel(open_incidents)
        .with_row(dash.Row("Phản hồi · Response"))
        .with_panel(response)
        .with_panel(by_severity_times)
        .with_panel(opened)
        .with_panel(escalations)
        .with_row(dash.Row("Cảnh báo và khu vực · Alarms and zones"))
        .with_panel(alarms_by_source)
        .with_panel(alarms)
        .with_panel(zone_status)
    )
    return Board(UID, "Incidents", board.build(), (VariableSample("district", multi=True, include_all=True),),
                 "now-7d")
