"""Reading the device registry: one device, a filtered page of devices, and their commissioning steps.

A caller's zones limit what it may see (``ZoneScope``). Changing devices is ``ioc_api.queries.device_writes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateways.database import Connection
from ioc_api.queries.device_zones import ZoneScope
from ioc_api.schemas.devices import (
    Commissioning,
    DeviceList,
    DevicePublic,
    Provisioning,
    Stage,
    ZoneRef,
)
from ioc_core.errors import NotAllowed, NotFound

__all__ = [
    "HEALTH_JOIN",
    "HEALTH_OF_JOIN",
    "SCOPE_SQL",
    "DeviceFilters",
    "device_id",
    "get_device",
    "list_devices",
    "refresh_commissioning",
    "scope_params",
]

@dataclass(frozen=True, slots=True)
class DeviceFilters:
    zone: str | None = None
    kind: str | None = None
    model: str | None = None
    status: str | None = None
    health: str | None = None
    provisioning: str | None = None
    seen_after: datetime | None = None
    seen_before: datetime | None = None
    search: str | None = None


SCOPE_SQL = """(%(scope)s::text[] IS NULL OR z.code = ANY(%(scope)s) OR z.parent_code = ANY(%(scope)s)
     OR (%(unzoned)s AND d.zone_id IS NULL AND d.status = 'unregistered'))"""

# Health, last seen, the expected interval and the last hour's uplinks of device d (as h): the database's
# device_health() (gateways/schema/0014_device_health.sql), which the feed, the boards and the alert rules
# read too. A query that reads a few devices names them in %(ids)s and uses HEALTH_OF_JOIN, so only they are
# looked up in uplinks, as the functions' comment explains.
HEALTH_JOIN = "JOIN device_health() h ON h.device_id = d.id"
HEALTH_OF_JOIN = "JOIN device_health_of(%(ids)s::integer[]) h ON h.device_id = d.id"

# Commissioning steps the uplinks prove, read without writing: the stored time once the background pass has
# recorded it, the uplinks' own otherwise (the same value, as both are the earliest uplink's time).
_STEPS_JOIN = """
LEFT JOIN LATERAL (SELECT
    coalesce(d.first_uplink_at, CASE WHEN d.status = 'registered'
             THEN (SELECT min(u.time) FROM uplinks u WHERE u.device_id = d.id) END) AS first_at,
    coalesce(d.decoding_verified_at, CASE WHEN d.status = 'registered'
             THEN (SELECT min(u.time) FROM uplinks u WHERE u.device_id = d.id AND u.decode_status = 'ok') END)
        AS ok_at
    OFFSET 0) cs ON true
"""

_COLUMNS = """d.dev_eui, d.name, d.description, d.status, h.health, d.kind, d.model, d.codec_id,
       d.latitude, d.longitude, z.code, z.name, d.join_eui, h.interval_s, d.tags, h.last_seen_at,
       d.provisioning, d.provisioning_error, d.provisioning_attempts, d.provisioning_next_at,
       d.registered_at, d.provisioned_at, cs.first_at, cs.ok_at, d.commissioned_at,
       d.claimed_at, d.decommissioned_at, d.created_at, d.updated_at, d.public"""

_FROM = "FROM devices d LEFT JOIN zones z ON z.id = d.zone_id"


def _public(r: tuple[Any, ...]) -> DevicePublic:
    status, provisioning = r[3], r[16]
    registered_at, provisioned_at, first_at, ok_at, commissioned_at = r[20:25]
    if commissioned_at is None and status == "registered" and ok_at is not None:
        # Mirrors refresh_commissioning, so a read shows the step before the background pass stores it.
        if provisioning == "not_configured":
            commissioned_at = max(ok_at, registered_at) if registered_at else ok_at
        elif provisioned_at is not None:
            commissioned_at = max(ok_at, provisioned_at)
    stage: Stage
    if status == "decommissioned":
        stage = "decommissioned"
    elif status == "unregistered":
        stage = "unregistered"
    else:
        steps: tuple[tuple[Stage, datetime | None], ...] = (
            ("commissioned", commissioned_at), ("decoding_verified", ok_at), ("first_uplink", first_at),
            ("provisioned", provisioned_at))
        stage = next((s for s, at in steps if at is not None), "registered")
    return DevicePublic(
        dev_eui=r[0], name=r[1], description=r[2], status=status, health=r[4], kind=r[5], model=r[6],
        codec_id=r[7], latitude=r[8], longitude=r[9], zone=ZoneRef(code=r[10], name=r[11]) if r[10] else None,
        join_eui=r[12], expected_interval_s=r[13], tags=r[14], last_seen_at=r[15],
        provisioning=Provisioning(state=provisioning, error=r[17], attempts=r[18], next_attempt_at=r[19]),
        commissioning=Commissioning(stage=stage, registered_at=registered_at, provisioned_at=provisioned_at,
                                    first_uplink_at=first_at, decoding_verified_at=ok_at,
                                    commissioned_at=commissioned_at, claimed_at=r[25], decommissioned_at=r[26]),
        created_at=r[27], updated_at=r[28], public=r[29],
    )


def scope_params(scope: ZoneScope, **more: Any) -> dict[str, Any]:
    return {"scope": None if scope is None else sorted(scope), "unzoned": True, **more}


def device_id(conn: Connection, dev_eui: str, scope: ZoneScope) -> tuple[int, str]:
    """The device's row id and status; NotFound when it does not exist, NotAllowed outside the scope."""
    row = conn.execute(
        f"""SELECT d.id, d.status, {SCOPE_SQL} FROM devices d LEFT JOIN zones z ON z.id = d.zone_id
            WHERE d.dev_eui = %(eui)s""",
        scope_params(scope, eui=dev_eui.lower()),
    ).fetchone()
    if row is None:
        raise NotFound(f"device {dev_eui} is not registered", field="dev_eui")
    if not row[2]:
        raise NotAllowed(f"device {dev_eui} is outside your zones")
    return int(row[0]), str(row[1])


def get_device(conn: Connection, dev_eui: str, scope: ZoneScope) -> DevicePublic:
    ident, _status = device_id(conn, dev_eui, scope)
    row = conn.execute(f"SELECT {_COLUMNS} {_FROM} {HEALTH_OF_JOIN} {_STEPS_JOIN} WHERE d.id = %(id)s",
                       scope_params(scope, id=ident, ids=[ident])).fetchone()
    assert row is not None
    return _public(row)


def list_devices(conn: Connection, filters: DeviceFilters, scope: ZoneScope, *, limit: int, offset: int) -> DeviceList:
    where = [SCOPE_SQL]
    params = scope_params(scope, limit=limit, offset=offset)
    for name in ("kind", "model", "status", "provisioning"):
        value = getattr(filters, name)
        if value is not None:
            where.append(f"d.{name} = %({name})s")
            params[name] = value
    if filters.zone is not None:
        where.append("(z.code = %(zone)s OR z.parent_code = %(zone)s)")
        params["zone"] = filters.zone
    if filters.search:
        where.append("(d.name ILIKE %(search)s OR d.dev_eui LIKE lower(%(search)s))")
        params["search"] = "%" + filters.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    seen = []
    if filters.seen_after is not None:
        seen.append("h.last_seen_at >= %(seen_after)s")
        params["seen_after"] = filters.seen_after
    if filters.seen_before is not None:
        seen.append("(h.last_seen_at IS NULL OR h.last_seen_at < %(seen_before)s)")
        params["seen_before"] = filters.seen_before
    if filters.health is not None:
        seen.append("h.health = %(health)s")
        params["health"] = filters.health
    condition = " AND ".join(where)
    if seen:
        # Filters on last seen need it for every candidate device.
        rows = conn.execute(
            f"""SELECT {_COLUMNS}, count(*) OVER () {_FROM} {HEALTH_JOIN} {_STEPS_JOIN}
                WHERE {condition} AND {" AND ".join(seen)}
                ORDER BY d.dev_eui LIMIT %(limit)s OFFSET %(offset)s""",
            params,
        ).fetchall()
        total = int(rows[0][-1]) if rows else _count(conn, f"{_FROM} {HEALTH_JOIN} WHERE {condition} AND "
                                                           + " AND ".join(seen), params)
    else:
        # Otherwise the page is chosen first and only its devices are looked up in the uplinks.
        page = [r[0] for r in conn.execute(
            f"SELECT d.id {_FROM} WHERE {condition} ORDER BY d.dev_eui LIMIT %(limit)s OFFSET %(offset)s", params)]
        rows = conn.execute(
            f"SELECT {_COLUMNS} {_FROM} {HEALTH_OF_JOIN} {_STEPS_JOIN} WHERE d.id = ANY(%(ids)s) ORDER BY d.dev_eui",
            {**params, "ids": page},
        ).fetchall()
        total = _count(conn, f"{_FROM} WHERE {condition}", params)
    return DeviceList(items=[_public(r) for r in rows], total=total, limit=limit, offset=offset)


def _count(conn: Connection, from_where: str, params: dict[str, Any]) -> int:
    row = conn.execute(f"SELECT count(*) {from_where}", params).fetchone()
    return int(row[0]) if row else 0


def refresh_commissioning(conn: Connection, device_ids: list[int] | None = None) -> int:
    """Fill in the commissioning steps the uplinks prove; returns how many devices moved on.

    The times are those of the uplinks themselves, so it does not matter when this runs. Only devices with a
    step still open are looked at, which keeps the background pass cheap once a fleet is commissioned.
    """
    with conn.transaction():
        moved = conn.execute(
            """UPDATE devices d SET first_uplink_at = coalesce(d.first_uplink_at, f.first_at),
                                    decoding_verified_at = coalesce(d.decoding_verified_at, f.ok_at)
               FROM (SELECT c.id,
                            (SELECT min(u.time) FROM uplinks u WHERE u.device_id = c.id) AS first_at,
                            (SELECT min(u.time) FROM uplinks u
                             WHERE u.device_id = c.id AND u.decode_status = 'ok') AS ok_at
                     FROM devices c
                     WHERE c.status = 'registered' AND (c.first_uplink_at IS NULL OR c.decoding_verified_at IS NULL)
                       AND (%(ids)s::int[] IS NULL OR c.id = ANY(%(ids)s))) f
               WHERE d.id = f.id
                 AND (d.first_uplink_at IS DISTINCT FROM coalesce(d.first_uplink_at, f.first_at)
                      OR d.decoding_verified_at IS DISTINCT FROM coalesce(d.decoding_verified_at, f.ok_at))""",
            {"ids": device_ids},
        ).rowcount
        moved += conn.execute(
            """UPDATE devices SET commissioned_at = greatest(decoding_verified_at,
                   CASE provisioning WHEN 'not_configured' THEN registered_at ELSE provisioned_at END)
               WHERE status = 'registered' AND commissioned_at IS NULL AND decoding_verified_at IS NOT NULL
                 AND (provisioning = 'not_configured' OR provisioned_at IS NOT NULL)
                 AND (%(ids)s::int[] IS NULL OR id = ANY(%(ids)s))""",
            {"ids": device_ids},
        ).rowcount
    return moved
