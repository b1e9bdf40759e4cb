"""Incident annotations: the moments an incident was opened, acknowledged, escalated and resolved, on the boards.

One SQL for every board, narrowed by the board's own condition on the incident ``i``: the Zone board's zone
and its wards, the Device board's zone and the incidents whose alarms name the device. The times come from
the incident's own columns (0016_operations.sql), so a marker stays where it was whatever the timeline holds.
"""

from __future__ import annotations

from dashboards.sql import SqlAnnotation

__all__ = ["ANNOTATION_COLUMNS", "incident_annotation", "incident_moments"]

ANNOTATION_COLUMNS = ("time", "text", "tags")


def incident_moments(condition: str) -> str:
    """Rows (time, text, tags) for incidents matching ``condition`` (SQL on ``i``), inside the time range."""
    return f"""
        SELECT x.time,
               'Sự cố #' || i.id || ' ' || x.what || ': ' || i.title || ' (' || i.severity || ', '
                   || i.zone_code || ')' AS text,
               concat_ws(',', 'incident', x.what, i.severity, i.hazard) AS tags
        FROM incidents i
        CROSS JOIN LATERAL (VALUES (i.opened_at, 'opened'), (i.acknowledged_at, 'acknowledged'),
                                   (i.escalated_at, 'escalated'), (i.resolved_at, 'resolved')) x (time, what)
        WHERE x.time IS NOT NULL AND $__timeFilter(x.time) AND ({condition})
        ORDER BY x.time"""


def incident_annotation(condition: str) -> SqlAnnotation:
    return SqlAnnotation("Sự cố · Incidents", incident_moments(condition), colour="red", columns=ANNOTATION_COLUMNS)
