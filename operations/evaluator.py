"""The operations evaluator: every zone's hazard status, the alarms, the incidents they open, and escalation.

``evaluate`` runs one round in one transaction under an advisory lock, so several processes may call it and
rounds never interleave; a round that finds the lock taken returns without doing anything (the other one is
doing the same work). A status that stays the same only has its ``evaluated_at``, reason and evidence
refreshed; a change is stored in ``zone_hazard_changes`` with the stations and values that made it.

In the same round and transaction, the alarms are brought up to date from every source (operations/alarms.py,
operations/alarm_sources.py), active alarms join their incidents (operations/incidents.py) and unacknowledged
incidents are escalated (operations/escalation.py). One transaction means an uplink's status change, its alarm,
its incident and the incident's messages are committed together or not at all; a round after a restart catches
up from the stored readings. ``evaluate`` returns the status changes (as before); ``evaluate_round`` all of it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from gateways.database import Connection, database_errors
from operations import alarm_sources, alarm_store
from operations.alarm_store import Applied
from operations.alarms import CLEAR_AFTER_S, Observation, hazard_conditions, plan
from operations.escalation import Escalated, escalate
from operations.incidents import Opened, attach
from operations.readings import Station, ZoneRef, stations, zones
from operations.status import LEVELS, Evidence, Level, Status, ZoneStatus, district_status, zone_status

__all__ = ["LOCK_KEY", "Change", "Round", "compute", "evaluate", "evaluate_round"]

LOCK_KEY = 0x10C_0013  # pg advisory lock of the evaluator: one round at a time, in any number of processes


@dataclass(frozen=True, slots=True)
class Change:
    zone: str
    hazard: str
    before: Status | None
    after: Status
    reason: str


@dataclass(frozen=True, slots=True)
class Round:
    """Everything one round did."""

    changes: list[Change]
    alarms: Applied
    incidents_opened: list[Opened]
    escalated: list[Escalated]


def compute(zone_list: Sequence[ZoneRef], hazards: Sequence[str], evidence: Sequence[Station]) -> list[ZoneStatus]:
    """Every district's and ward's status for every hazard, from the stations' evidence (no I/O)."""
    by_zone: dict[tuple[str, str], list[Evidence]] = defaultdict(list)
    for station in evidence:
        by_zone[(station.evidence.zone, station.hazard)].append(station.evidence)
    wards_of: dict[str, list[str]] = defaultdict(list)
    for zone in zone_list:
        if zone.level == "ward" and zone.parent_code:
            wards_of[zone.parent_code].append(zone.code)
    out: list[ZoneStatus] = []
    for hazard in hazards:
        ward_status = {z.code: zone_status(z.code, hazard, by_zone[(z.code, hazard)])
                       for z in zone_list if z.level == "ward"}
        out.extend(ward_status.values())
        for zone in zone_list:
            if zone.level != "district":
                continue
            own = zone_status(zone.code, hazard, by_zone[(zone.code, hazard)])
            wards = [ward_status[w] for w in wards_of[zone.code] if w in ward_status]
            out.append(district_status(zone.code, hazard, own, wards))
    return out


def evaluate(conn: Connection, at: datetime) -> list[Change] | None:
    """One round at ``at``: the status changes stored, or None when another round holds the lock. Database
    errors arrive as the platform's (``DatabaseUnavailable`` to retry)."""
    done = evaluate_round(conn, at)
    return None if done is None else done.changes


def evaluate_round(conn: Connection, at: datetime, *, clear_after_s: float = CLEAR_AFTER_S) -> Round | None:
    """One round at ``at`` with all it did, or None when another round holds the lock."""
    with database_errors("operations round"), conn.transaction():
        locked = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (LOCK_KEY,)).fetchone()
        if not locked or not locked[0]:
            return None
        evidence = stations(conn, at, _previous_levels(conn))
        changes = _statuses(conn, at, evidence)
        applied = _alarms(conn, at, evidence, clear_after_s)
        opened = attach(conn, applied, at)
        return Round(changes, applied, opened, escalate(conn, at))


def _previous_levels(conn: Connection) -> dict[tuple[str, str], Level]:
    """Each station's level in the stored status evidence (the last round's), for the hysteresis."""
    out: dict[tuple[str, str], Level] = {}
    for eui, metric, level in conn.execute(
            """SELECT DISTINCT e->>'dev_eui', e->>'metric', e->>'level'
               FROM zone_hazard_status s, jsonb_array_elements(s.evidence) e
               WHERE e->>'level' IS NOT NULL"""):
        if level not in LEVELS:
            continue
        known, key = LEVELS[LEVELS.index(level)], (str(eui), str(metric))
        if key not in out or LEVELS.index(known) > LEVELS.index(out[key]):
            out[key] = known  # a station shown in its ward's and its district's evidence
    return out


def _alarms(conn: Connection, at: datetime, evidence: list[Station], clear_after_s: float) -> Applied:
    current = alarm_store.active(conn)
    hazard = hazard_conditions(alarm_sources.hazard_readings(evidence),
                               [a.subject for a in current if a.source == "hazard"])
    technical = alarm_sources.technical(conn, at)
    seen = Observation(hazard.conditions + technical.conditions, hazard.undetermined | technical.undetermined)
    return alarm_store.apply(conn, plan(current, seen, at, clear_after_s), at)


def _statuses(conn: Connection, at: datetime, evidence: list[Station]) -> list[Change]:
    hazards = [r[0] for r in conn.execute("SELECT code FROM hazards ORDER BY code")]
    statuses = compute(zones(conn), hazards, evidence)
    current: dict[tuple[str, str], Status] = {
        (z, h): s for z, h, s in conn.execute("SELECT zone_code, hazard, status FROM zone_hazard_status")}
    changes = []
    for status in statuses:
        key = (status.zone, status.hazard)
        before = current.get(key)
        shown = json.dumps([_evidence(e) for e in status.because], ensure_ascii=False)
        params = {"zone": status.zone, "hazard": status.hazard, "status": status.status, "at": at,
                  "reason": status.reason, "evidence": shown, "before": before}
        if before == status.status:
            conn.execute(
                """UPDATE zone_hazard_status SET evaluated_at = %(at)s, reason = %(reason)s,
                          evidence = %(evidence)s::jsonb
                   WHERE zone_code = %(zone)s AND hazard = %(hazard)s""", params)
            continue
        conn.execute(
            """INSERT INTO zone_hazard_status (zone_code, hazard, status, since, evaluated_at, reason, evidence)
               VALUES (%(zone)s, %(hazard)s, %(status)s, %(at)s, %(at)s, %(reason)s, %(evidence)s::jsonb)
               ON CONFLICT (zone_code, hazard) DO UPDATE SET status = EXCLUDED.status, since = EXCLUDED.since,
                   evaluated_at = EXCLUDED.evaluated_at, reason = EXCLUDED.reason, evidence = EXCLUDED.evidence""",
            params)
        conn.execute(
            """INSERT INTO zone_hazard_changes (zone_code, hazard, at, from_status, to_status, reason, evidence)
               VALUES (%(zone)s, %(hazard)s, %(at)s, %(before)s, %(status)s, %(reason)s, %(evidence)s::jsonb)""",
            params)
        changes.append(Change(status.zone, status.hazard, before, status.status, status.reason))
    return changes


def _evidence(e: Evidence) -> dict[str, Any]:
    out = asdict(e)
    out["observed_at"] = e.observed_at.isoformat() if e.observed_at else None
    return out
