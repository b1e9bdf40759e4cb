"""What the stations of each zone say about each hazard at a moment: the SQL side of the hazard status.

A station for a hazard measure is a registered device with a threshold row for the measure's threshold metric,
its own (``device_id``) or its kind's; the device's row wins, level by level. Its value is the measure's
aggregate of good-quality readings within the window before ``at``; it is fresh when that value exists and
``device_health`` calls the device reporting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from gateways.database import Connection
from operations.status import Evidence, Level, Thresholds, level_of

__all__ = ["Station", "ZoneRef", "stations", "zones"]


@dataclass(frozen=True, slots=True)
class ZoneRef:
    code: str
    level: str
    parent_code: str | None


@dataclass(frozen=True, slots=True)
class Station:
    """One station's evidence for one hazard measure."""

    hazard: str
    evidence: Evidence
    thresholds: Thresholds = field(default_factory=Thresholds)  # the levels the hazard alarms' margin needs


_STATIONS = """
WITH measure AS (SELECT hazard, metric, aggregate, window_s, threshold_metric FROM hazard_measures),
candidate AS (
    SELECT m.hazard, m.metric, m.aggregate, m.window_s, m.threshold_metric, d.id AS device_id, d.dev_eui,
           z.code AS zone_code,
           coalesce(td.watch_above, tk.watch_above) AS watch_above,
           coalesce(td.alert_above, tk.alert_above) AS alert_above,
           coalesce(td.danger_above, tk.danger_above) AS danger_above
    FROM measure m
    JOIN devices d ON d.status = 'registered'
    JOIN zones z ON z.id = d.zone_id AND z.valid_to IS NULL
    LEFT JOIN alert_thresholds td ON td.metric = m.threshold_metric AND td.device_id = d.id
    LEFT JOIN alert_thresholds tk ON tk.metric = m.threshold_metric AND tk.kind = d.kind AND tk.device_id IS NULL
    WHERE td.id IS NOT NULL OR tk.id IS NOT NULL
)
SELECT c.hazard, c.threshold_metric, c.dev_eui, c.zone_code, v.value, v.observed_at, h.health,
       c.watch_above, c.alert_above, c.danger_above
FROM candidate c
JOIN metrics mt ON mt.name = c.metric
JOIN device_health_of(ARRAY(SELECT DISTINCT device_id FROM candidate), %(at)s) h ON h.device_id = c.device_id
LEFT JOIN LATERAL (
    SELECT CASE c.aggregate WHEN 'latest' THEN (array_agg(x.value ORDER BY x.time DESC))[1]
                            WHEN 'sum' THEN sum(x.value)
                            ELSE avg(x.value) END AS value,
           max(x.time) AS observed_at
    FROM measurements x
    WHERE x.device_id = c.device_id AND x.metric_id = mt.id AND x.quality = 0
      AND x.time > %(at)s - make_interval(secs => c.window_s) AND x.time <= %(at)s
) v ON true
ORDER BY c.hazard, c.zone_code, c.dev_eui, c.threshold_metric
"""


def stations(conn: Connection, at: datetime,
             previous: Mapping[tuple[str, str], Level] | None = None) -> list[Station]:
    """Every station's evidence for every hazard measure at ``at``; ``previous`` holds each station's level of
    the last round by (dev_eui, threshold metric), for the hysteresis of ``level_of``."""
    out = []
    for hazard, metric, eui, zone, value, observed_at, health, watch, alert, danger in conn.execute(
        _STATIONS, {"at": at}
    ):
        level: Level | None = None
        note = ""
        if watch is not None and alert is not None and watch > alert:
            watch = None  # a default watch level left above a station's own alert level
        thresholds = Thresholds(watch, alert, danger)
        if health != "reporting":
            note = f"device {health}"
        elif value is None:
            note = "no reading in the window"
        else:
            level = level_of(float(value), thresholds, (previous or {}).get((eui, metric)))
        out.append(Station(hazard, Evidence(eui, zone, metric, None if value is None else float(value),
                                            observed_at, level, note), thresholds))
    return out


def zones(conn: Connection) -> list[ZoneRef]:
    """The current districts and wards (the city is not a zone a status is kept for)."""
    return [ZoneRef(code, level, parent) for code, level, parent in conn.execute(
        "SELECT code, level, parent_code FROM zones WHERE valid_to IS NULL AND level IN ('district', 'ward') "
        "ORDER BY code")]
