"""Where alarms come from: one query per source, each turning the database's state at ``at`` into conditions.

Every source reads the rules already written once elsewhere, so an alarm never disagrees with the board or the
API that shows the same thing: ``device_health`` (0014) for silent devices, ``gateway_status`` (0014) for
gateways, the measurements' ``quality`` flag the ingest sets (1: outside the metric's range, 2: not finite) for
readings out of range, and the retired Grafana dead-letter rule's definition (``DEAD_LETTERS_FLOOR``). The hazard source
is the stations the status round already read (``hazard_readings``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from gateways.database import Connection
from operations.alarms import Condition, HazardReading, Observation, as_severity
from operations.readings import Station

__all__ = [
    "DEAD_LETTERS_FLOOR",
    "STALL_EXPECTED_UPLINKS",
    "STALL_MIN_S",
    "dead_letters",
    "device_flatline",
    "device_out_of_range",
    "device_silent",
    "gateway_offline",
    "hazard_readings",
    "ingest_stalled",
    "technical",
]

# Fewer dead letters in 15 minutes never page anyone (the floor of the Grafana rule this alarm replaced).
DEAD_LETTERS_FLOOR = 10

# The ingest is stalled when no uplink arrived for as long as the live fleet needs to send this many (so a
# chance gap in a small, slow fleet does not page anyone: ten expected and none seen is e^-10 by chance), and
# at least STALL_MIN_S.
STALL_EXPECTED_UPLINKS = 10
STALL_MIN_S = 300


def hazard_readings(stations: Sequence[Station]) -> list[HazardReading]:
    """The status round's stations as hazard readings; a station without a level (not fresh) has no value."""
    return [HazardReading(s.hazard, s.evidence.metric, s.evidence.dev_eui, s.evidence.zone,
                          s.evidence.value if s.evidence.level is not None else None, s.thresholds,
                          s.evidence.observed_at) for s in stations]


def device_silent(conn: Connection, at: datetime) -> list[Condition]:
    """Registered devices that device_health calls silent (a device never seen is not silent: it has not
    started yet). Severity minor: the zone's status turns unknown, which operators see."""
    rows = conn.execute(
        """SELECT d.dev_eui, z.code, h.last_seen_at, h.silent_after_s
           FROM device_health(%(at)s) h
           JOIN devices d ON d.id = h.device_id
           LEFT JOIN zones z ON z.id = d.zone_id
           WHERE d.status = 'registered' AND h.health = 'silent'
           ORDER BY d.dev_eui""", {"at": at}).fetchall()
    return [Condition("device_silent", eui, "minor",
                      f"{eui} silent since {last:%Y-%m-%d %H:%M} UTC (allowed {allowed:g} s)",
                      zone=zone, device_eui=eui,
                      details={"last_seen_at": last.isoformat(), "silent_after_s": allowed})
            for eui, zone, last, allowed in rows]


def device_flatline(conn: Connection, at: datetime) -> list[Condition]:
    """Devices whose metric kept one value for the rule's ``flatline_intervals`` newest good readings, all
    within that many reporting intervals (twice over, for jitter) before ``at``: a stuck sensor."""
    rows = conn.execute(
        """SELECT d.dev_eui, z.code, r.metric, r.flatline_intervals, r.severity, f.value, f.since
           FROM devices d
           JOIN device_alarm_rules r ON r.kind = d.kind AND r.flatline_intervals IS NOT NULL
           JOIN metrics mt ON mt.name = r.metric
           JOIN device_intervals i ON i.device_id = d.id
           LEFT JOIN zones z ON z.id = d.zone_id
           CROSS JOIN LATERAL (
               SELECT min(x.value) AS value, max(x.value) AS top, count(*) AS n, min(x.time) AS since
               FROM (SELECT m.value, m.time FROM measurements m
                     WHERE m.device_id = d.id AND m.metric_id = mt.id AND m.quality = 0 AND m.time <= %(at)s
                       AND m.time > %(at)s - make_interval(secs => 2 * r.flatline_intervals * i.interval_s)
                     ORDER BY m.time DESC LIMIT r.flatline_intervals) x
           ) f
           WHERE d.status = 'registered' AND f.n = r.flatline_intervals AND f.value = f.top
           ORDER BY d.dev_eui, r.metric""", {"at": at}).fetchall()
    return [Condition("device_flatline", f"{eui}:{metric}", as_severity(severity),
                      f"{eui} {metric} stuck at {value:g} for its last {n} readings",
                      zone=zone, device_eui=eui,
                      details={"metric": metric, "value": value, "readings": n, "since": since.isoformat()})
            for eui, zone, metric, n, severity, value, since in rows]


def device_out_of_range(conn: Connection, at: datetime) -> list[Condition]:
    """Each device's newest reading of each metric within its late-after time before ``at`` that the ingest
    flagged (outside the metric's plausible range, or not finite) or that leaves its kind's rule range. The
    metrics looked at are its kind's usual ones (``device_kinds.metrics``) and those with a rule: one index
    probe each, where "every metric the device sent lately" would read the device's whole history."""
    rows = conn.execute(
        """SELECT d.dev_eui, z.code, mt.name, x.value, x.quality, x.time, r.minimum, r.maximum,
                  coalesce(r.severity, 'minor')
           FROM devices d
           JOIN device_intervals i ON i.device_id = d.id
           LEFT JOIN device_kinds k ON k.kind = d.kind
           LEFT JOIN zones z ON z.id = d.zone_id
           CROSS JOIN LATERAL (SELECT unnest(k.metrics) UNION
                               SELECT r2.metric FROM device_alarm_rules r2 WHERE r2.kind = d.kind) usual (metric)
           JOIN metrics mt ON mt.name = usual.metric
           CROSS JOIN LATERAL (
               SELECT m.value, m.quality, m.time FROM measurements m
               WHERE m.device_id = d.id AND m.metric_id = mt.id AND m.time <= %(at)s
                 AND m.time > %(at)s - make_interval(secs => i.late_after_s)
               ORDER BY m.time DESC LIMIT 1
           ) x
           LEFT JOIN device_alarm_rules r ON r.kind = d.kind AND r.metric = mt.name
           WHERE d.status = 'registered'
             AND (x.quality <> 0 OR x.value < r.minimum OR x.value > r.maximum)
           ORDER BY d.dev_eui, mt.name""", {"at": at}).fetchall()
    out = []
    for eui, zone, metric, value, quality, time, low, high, severity in rows:
        why = ("outside the metric's plausible range" if quality == 1 else "not a finite number" if quality == 2
               else f"outside [{'' if low is None else f'{low:g}'}, {'' if high is None else f'{high:g}'}]")
        out.append(Condition("device_out_of_range", f"{eui}:{metric}", as_severity(severity),
                             f"{eui} {metric} {value:g} {why}", zone=zone, device_eui=eui,
                             details={"metric": metric, "value": value, "quality": quality,
                                      "observed_at": time.isoformat(), "minimum": low, "maximum": high}))
    return out


def gateway_offline(conn: Connection, at: datetime) -> list[Condition]:
    """Gateways gateway_status calls offline, in the zone their position falls in (none: city-wide)."""
    rows = conn.execute(
        """SELECT g.gateway_eui, coalesce(g.name, g.gateway_eui), s.last_seen_at, z.code
           FROM gateway_status(%(at)s) s
           JOIN gateways g ON g.id = s.gateway_id
           LEFT JOIN zones z ON z.id = zone_at(g.longitude, g.latitude)
           WHERE s.status = 'offline'
           ORDER BY g.gateway_eui""", {"at": at}).fetchall()
    return [Condition("gateway_offline", eui, "major",
                      f"gateway {name} offline" + (f" since {last:%Y-%m-%d %H:%M} UTC" if last else ""),
                      zone=zone, details={"gateway_eui": eui, "last_seen_at": last.isoformat() if last else None})
            for eui, name, last, zone in rows]


def dead_letters(conn: Connection, at: datetime) -> list[Condition]:
    """Stages whose dead letters in the 15 minutes before ``at`` exceed max(DEAD_LETTERS_FLOOR, twice the
    previous 24 hours' mean per 15 minutes): the Grafana rule's definition, evaluated at ``at``."""
    rows = conn.execute(
        """SELECT s.stage, s.recent, s.baseline FROM (
               SELECT l.stage,
                      count(*) FILTER (WHERE l.received_at > %(at)s - interval '15 minutes') AS recent,
                      count(*) FILTER (WHERE l.received_at <= %(at)s - interval '15 minutes') / 96.0 AS baseline
               FROM dead_letters l
               WHERE l.received_at > %(at)s - interval '24 hours 15 minutes' AND l.received_at <= %(at)s
               GROUP BY l.stage
           ) s
           WHERE s.recent > greatest(%(floor)s, 2 * s.baseline)
           ORDER BY s.stage""", {"at": at, "floor": DEAD_LETTERS_FLOOR}).fetchall()
    return [Condition("dead_letters", stage, "major",
                      f"{recent} dead letters at stage {stage} in 15 minutes (normal: {float(baseline):.1f})",
                      details={"stage": stage, "recent": recent, "baseline": float(baseline)})
            for stage, recent, baseline in rows]


def ingest_stalled(conn: Connection, at: datetime) -> list[Condition]:
    """The ingest stalled: no uplink stored for as long as the devices seen in the day before ``at`` need to
    send STALL_EXPECTED_UPLINKS between them (at least STALL_MIN_S). Only while devices should report."""
    row = conn.execute(
        """SELECT max(l.last), sum(1.0 / i.interval_s) FILTER (WHERE l.last > %(at)s - interval '1 day')
           FROM devices d
           JOIN device_intervals i ON i.device_id = d.id
           CROSS JOIN LATERAL (SELECT max(u.time) AS last FROM uplinks u
                               WHERE u.device_id = d.id AND u.time <= %(at)s) l
           WHERE d.status = 'registered'""", {"at": at}).fetchone()
    if row is None or row[0] is None or not row[1]:
        return []
    newest, rate = row
    allowed = max(STALL_MIN_S, STALL_EXPECTED_UPLINKS / float(rate))
    quiet = (at - newest).total_seconds()
    if quiet <= allowed:
        return []
    return [Condition("ingest_stalled", "ingest", "critical",
                      f"no uplink stored for {quiet:.0f} s (expected {STALL_EXPECTED_UPLINKS} within {allowed:.0f} s)",
                      details={"newest_uplink": newest.isoformat(), "quiet_s": quiet, "allowed_s": allowed})]


def technical(conn: Connection, at: datetime) -> Observation:
    """Every source but the hazards, in one observation."""
    conditions = [*device_silent(conn, at), *device_flatline(conn, at), *device_out_of_range(conn, at),
                  *gateway_offline(conn, at), *dead_letters(conn, at), *ingest_stalled(conn, at)]
    return Observation(tuple(conditions))

