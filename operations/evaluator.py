"""The hazard status evaluator: compute every zone's status for every hazard and store what changed.

``evaluate`` runs one round in one transaction under an advisory lock, so several processes may call it and
rounds never interleave; a round that finds the lock taken returns without doing anything (the other one is
doing the same work). A status that stays the same only has its ``evaluated_at``, reason and evidence
refreshed; a change is stored in ``zone_hazard_changes`` with the stations and values that made it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from gateways.database import Connection, database_errors
from operations.readings import Station, ZoneRef, stations, zones
from operations.status import Evidence, Status, ZoneStatus, district_status, zone_status

__all__ = ["LOCK_KEY", "Change", "compute", "evaluate"]

LOCK_KEY = 0x10C_0013  # pg advisory lock of the evaluator: one round at a time, in any number of processes


@dataclass(frozen=True, slots=True)
class Change:
    zone: str
    hazard: str
    before: Status | None
    after: Status
    reason: str


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
    """One round at ``at``: the changes stored, or None when another round holds the lock. Database errors
    arrive as the platform's (``DatabaseUnavailable`` to retry)."""
    with database_errors("hazard status round"):
        return _round(conn, at)


def _round(conn: Connection, at: datetime) -> list[Change] | None:
    with conn.transaction():
        locked = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (LOCK_KEY,)).fetchone()
        if not locked or not locked[0]:
            return None
        hazards = [r[0] for r in conn.execute("SELECT code FROM hazards ORDER BY code")]
        statuses = compute(zones(conn), hazards, stations(conn, at))
        current: dict[tuple[str, str], Status] = {
            (z, h): s for z, h, s in conn.execute("SELECT zone_code, hazard, status FROM zone_hazard_status")}
        changes = []
        for status in statuses:
            key = (status.zone, status.hazard)
            before = current.get(key)
            evidence = json.dumps([_evidence(e) for e in status.because], ensure_ascii=False)
            params = {"zone": status.zone, "hazard": status.hazard, "status": status.status, "at": at,
                      "reason": status.reason, "evidence": evidence, "before": before}
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
