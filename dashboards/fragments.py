"""SQL pieces the boards and alert rules share, so every board computes a device's state the same way.

They follow the API's definitions (``ioc_api/queries/devices.py``), reading the per-kind intervals from
``device_kinds`` (synced from ``ioc_core.kinds``) because Grafana only sees the database.
"""

from __future__ import annotations

from ioc_core.kinds import DEFAULT_INTERVAL_S, LATE_AFTER, SILENT_AFTER

__all__ = [
    "DISTRICT_OF",
    "INTERVAL",
    "LAST_SEEN",
    "LONG_RANGE",
    "SHORT_RANGE",
    "STATE",
    "ZONE_IDS",
    "beyond",
    "metric_id",
    "up_to",
]

# The expected interval of device d (k is its LEFT JOINed device_kinds row): the device's own, else its kind's.
INTERVAL = f"coalesce(d.expected_interval_s, k.interval_s, {DEFAULT_INTERVAL_S})"

# One index probe per device on uplinks (device_id, time DESC).
LAST_SEEN = (
    "LEFT JOIN LATERAL (SELECT u.time AS t FROM uplinks u WHERE u.device_id = d.id "
    "ORDER BY u.time DESC LIMIT 1) ls ON true"
)

STATE = f"""CASE WHEN ls.t IS NULL THEN 'never_seen'
        WHEN now() - ls.t <= make_interval(secs => {INTERVAL} * coalesce(k.late_after, {LATE_AFTER})) THEN 'reporting'
        WHEN now() - ls.t <= make_interval(secs => {INTERVAL} * coalesce(k.silent_after, {SILENT_AFTER})) THEN 'late'
        ELSE 'silent' END"""

# Every row (all boundary versions) of the zone in ${zone} and of its wards: readings keep the zone row they
# were taken in, and a district board includes its wards.
ZONE_IDS = "(SELECT id FROM zones WHERE code = ${zone:sqlstring} OR parent_code = ${zone:sqlstring})"

# The district a zone row z belongs to: a ward's parent, a district itself (whose parent, if any, is the city).
DISTRICT_OF = "CASE z.level WHEN 'ward' THEN z.parent_code ELSE z.code END"


def up_to(seconds: int) -> str:
    """True when the dashboard's range is at most ``seconds``: the raw query of a raw/rollup pair runs.

    Panels with a raw and a rollup query show one or the other. Both conditions are constants once Grafana
    has filled in the range, so PostgreSQL plans the query that does not apply as a one-time filter that is
    never executed.
    """
    return f"($__unixEpochTo() - $__unixEpochFrom()) <= {seconds}"


def beyond(seconds: int) -> str:
    """True when the range is longer than ``seconds``: the rollup query runs."""
    return f"($__unixEpochTo() - $__unixEpochFrom()) > {seconds}"


# Readings: raw up to two days, the hourly rollups beyond, so a 30-day view reads 720 rows per series
# instead of 8,640.
SHORT_RANGE = up_to(172800)
LONG_RANGE = beyond(172800)


def metric_id(name_sql: str) -> str:
    """A metric's id by name, evaluated once per query (an InitPlan), not per row."""
    return f"(SELECT id FROM metrics WHERE name = {name_sql})"
