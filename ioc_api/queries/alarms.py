"""Reading alarms (written by the evaluator, ``operations/alarms.py``): a filtered page, one alarm, an incident's.

Who sees which: admins and city operators all; district operators those of their zones (a district covers its
wards); technicians only device and gateway alarms in their zones. Alarms without a zone (the pipeline's) are
the city's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateways.database import Connection
from ioc_api.queries.device_zones import ZoneScope
from ioc_api.schemas.operations import Alarm, AlarmList
from ioc_core.errors import NotAllowed, NotFound

__all__ = ["TECHNICIAN_SOURCES", "AlarmFilters", "AlarmScope", "alarms_of", "get_alarm", "list_alarms"]

TECHNICIAN_SOURCES = ("device_silent", "device_flatline", "device_out_of_range", "gateway_offline")
"""The alarms a technician's work can end."""


@dataclass(frozen=True, slots=True)
class AlarmScope:
    """The alarms a caller may read: of these zones (None: all, and those without a zone) and sources."""

    zones: ZoneScope
    sources: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class AlarmFilters:
    state: str | None = None
    source: str | None = None
    zone: str | None = None
    severity: str | None = None
    hazard: str | None = None
    incident_id: int | None = None


_COLUMNS = """a.id, a.source, a.subject, a.hazard, a.zone_code, a.device_eui, a.severity, a.state, a.message,
              a.details, a.first_seen, a.last_seen, a.count, a.clearing_since, a.cleared_at, a.incident_id"""


def _in_zones(column: str, param: str) -> str:
    """``column`` names one of the zone codes in ``param`` or one of their wards."""
    return (f"({column} = ANY(%({param})s) OR EXISTS (SELECT 1 FROM zones pz WHERE pz.code = {column} "
            f"AND pz.valid_to IS NULL AND pz.parent_code = ANY(%({param})s)))")


_SCOPE_SQL = f"""(%(scope)s::text[] IS NULL OR {_in_zones('a.zone_code', 'scope')})
                AND (%(sources)s::text[] IS NULL OR a.source = ANY(%(sources)s))"""


def _params(scope: AlarmScope, **more: Any) -> dict[str, Any]:
    return {"scope": None if scope.zones is None else sorted(scope.zones),
            "sources": None if scope.sources is None else list(scope.sources), **more}


def _alarm(r: tuple[Any, ...]) -> Alarm:
    return Alarm(id=r[0], source=r[1], subject=r[2], hazard=r[3], zone=r[4], device_eui=r[5], severity=r[6],
                 state=r[7], message=r[8], details=r[9] if isinstance(r[9], dict) else {}, first_seen=r[10],
                 last_seen=r[11], count=r[12], clearing_since=r[13], cleared_at=r[14], incident_id=r[15])


def list_alarms(conn: Connection, filters: AlarmFilters, scope: AlarmScope, *, limit: int, offset: int) -> AlarmList:
    """Newest first (by last seen), with the total the filters and scope leave."""
    where = [_SCOPE_SQL]
    params = _params(scope, limit=limit, offset=offset)
    for name in ("state", "source", "severity", "hazard"):
        value = getattr(filters, name)
        if value is not None:
            where.append(f"a.{name} = %({name})s")
            params[name] = value
    if filters.incident_id is not None:
        where.append("a.incident_id = %(incident_id)s")
        params["incident_id"] = filters.incident_id
    if filters.zone is not None:
        where.append(_in_zones("a.zone_code", "zone"))
        params["zone"] = [filters.zone]
    condition = " AND ".join(where)
    rows = conn.execute(
        f"""SELECT {_COLUMNS}, count(*) OVER () FROM alarms a WHERE {condition}
            ORDER BY a.last_seen DESC, a.id DESC LIMIT %(limit)s OFFSET %(offset)s""", params).fetchall()
    if rows:
        total = int(rows[0][-1])
    else:
        found = conn.execute(f"SELECT count(*) FROM alarms a WHERE {condition}", params).fetchone()
        total = int(found[0]) if found else 0
    return AlarmList(items=[_alarm(r) for r in rows], total=total, limit=limit, offset=offset)


def get_alarm(conn: Connection, alarm_id: int, scope: AlarmScope) -> Alarm:
    """NotFound when it does not exist, NotAllowed outside the caller's zones or sources (as devices)."""
    row = conn.execute(f"SELECT {_COLUMNS}, {_SCOPE_SQL} FROM alarms a WHERE a.id = %(id)s",
                       _params(scope, id=alarm_id)).fetchone()
    if row is None:
        raise NotFound(f"alarm {alarm_id} does not exist", field="alarm_id")
    if not row[-1]:
        if scope.sources is not None and row[1] not in scope.sources:
            raise NotAllowed(f"alarm {alarm_id} is a {row[1]} alarm; technicians see device and gateway alarms")
        raise NotAllowed(f"alarm {alarm_id} is in zone {row[4]!r}, outside your zones")
    return _alarm(row)


def alarms_of(conn: Connection, incident_id: int) -> list[Alarm]:
    """The alarms grouped in an incident, active first, newest first."""
    rows = conn.execute(f"""SELECT {_COLUMNS} FROM alarms a WHERE a.incident_id = %s
                            ORDER BY a.state, a.last_seen DESC, a.id DESC LIMIT 500""", (incident_id,)).fetchall()
    return [_alarm(r) for r in rows]
