"""Reading each zone's hazard status (written by the evaluator, ``operations/evaluator.py``) and its changes."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from gateways.database import Connection
from ioc_api.queries.device_zones import ZoneScope
from ioc_api.schemas.operations import HazardStatus, StatusChange, ZoneStatus
from ioc_core.errors import NotAllowed, NotFound
from operations.sop import Text
from operations.status import worst

__all__ = ["zone_status", "zone_statuses"]

_ZONES = """SELECT z.code, z.name, z.level, z.parent_code FROM zones z
            WHERE z.valid_to IS NULL AND z.level <> 'city'
              AND (%(scope)s::text[] IS NULL OR z.code = ANY(%(scope)s) OR z.parent_code = ANY(%(scope)s))
              AND (%(code)s::text IS NULL OR z.code = %(code)s)
            ORDER BY z.level, z.code"""

# Every hazard of every zone: a pair the evaluator has not written yet is unknown, never normal.
_STATUS = """SELECT z.code, h.code, h.name_vi, h.name_en, coalesce(s.status, 'unknown'), s.since, s.evaluated_at,
                    coalesce(s.reason, 'not evaluated yet'), coalesce(s.evidence, '[]'::jsonb)
             FROM unnest(%(codes)s::text[]) AS z(code) CROSS JOIN hazards h
             LEFT JOIN zone_hazard_status s ON s.zone_code = z.code AND s.hazard = h.code
             WHERE %(hazard)s::text IS NULL OR h.code = %(hazard)s
             ORDER BY z.code, h.code"""


def _scope(scope: ZoneScope) -> list[str] | None:
    return None if scope is None else sorted(scope)


def zone_statuses(conn: Connection, scope: ZoneScope, *, hazard: str | None = None,
                  code: str | None = None) -> list[ZoneStatus]:
    """Every current district and ward in ``scope`` with its status per hazard (the city map in one call)."""
    zones = conn.execute(_ZONES, {"scope": _scope(scope), "code": code}).fetchall()
    hazards: dict[str, list[HazardStatus]] = defaultdict(list)
    for r in conn.execute(_STATUS, {"codes": [z[0] for z in zones], "hazard": hazard}):
        hazards[r[0]].append(HazardStatus(hazard=r[1], hazard_name=Text(vi=r[2], en=r[3]), status=r[4], since=r[5],
                                          evaluated_at=r[6], reason=r[7], evidence=_list(r[8])))
    return [ZoneStatus(code=z[0], name=z[1], level=z[2], parent_code=z[3],
                       worst=worst(h.status for h in hazards[z[0]]) or "unknown", hazards=hazards[z[0]])
            for z in zones]


def zone_status(conn: Connection, code: str, scope: ZoneScope, *, limit: int,
                hazard: str | None = None) -> ZoneStatus:
    """One zone's status with its newest ``limit`` changes; NotFound for no such zone, NotAllowed outside scope."""
    found = zone_statuses(conn, scope, hazard=hazard, code=code)
    if not found:
        if scope is not None and zone_statuses(conn, None, code=code):
            raise NotAllowed(f"zone {code!r} is outside your zones")
        raise NotFound(f"zone {code!r} does not exist", field="code")
    rows = conn.execute(
        """SELECT id, hazard, at, from_status, to_status, reason, evidence FROM zone_hazard_changes
           WHERE zone_code = %(code)s AND (%(hazard)s::text IS NULL OR hazard = %(hazard)s)
           ORDER BY at DESC, id DESC LIMIT %(limit)s""",
        {"code": code, "hazard": hazard, "limit": limit},
    ).fetchall()
    changes = [StatusChange(id=r[0], hazard=r[1], at=r[2], from_status=r[3], to_status=r[4], reason=r[5],
                            evidence=_list(r[6])) for r in rows]
    return found[0].model_copy(update={"changes": changes})


def _list(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, list):
        return [v if isinstance(v, dict) else {"value": v} for v in value]
    return [value] if isinstance(value, dict) else []
