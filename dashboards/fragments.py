"""SQL pieces the boards and alert rules share, so every board computes a device's state the same way.

A device's health and last seen come from the database's ``device_health()`` and its expected interval from
``device_intervals`` (gateways/schema/0014_device_health.sql), which the IOC API and the open feed read too.
"""

from __future__ import annotations

__all__ = [
    "DISTRICT_OF",
    "GATEWAY_STATUS",
    "HEALTH",
    "LONG_RANGE",
    "SHORT_RANGE",
    "ZONE_IDS",
    "beyond",
    "health_of",
    "metric_id",
    "up_to",
]

# Device d's health (reporting, late, silent, never_seen), last uplink and expected interval, as h (columns
# health, last_seen_at, interval_s, uplinks_last_hour, late_after_s, silent_after_s), for queries that read
# the whole fleet.
HEALTH = "JOIN device_health() h ON h.device_id = d.id"


def health_of(ids_sql: str) -> str:
    """``HEALTH`` for queries that read a few devices: only those in the integer array ``ids_sql`` are looked
    up in uplinks (see device_health's comment in gateways/schema/0014_device_health.sql)."""
    return f"JOIN device_health_of({ids_sql}) h ON h.device_id = d.id"

# Gateway g's status (online, offline, never_seen: ChirpStack's while its sync is fresh, else from the last
# uplink, offline after ten minutes) and last seen, as s: the database's gateway_status(), as the API reads it.
GATEWAY_STATUS = "JOIN gateway_status() s ON s.gateway_id = g.id"

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
