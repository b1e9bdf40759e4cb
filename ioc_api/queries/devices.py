"""The device registry: register, read, list, update, claim and decommission devices, with audit records.

A caller's zones limit what it may see and change (``Scope``); the zone of a device always comes from its
coordinates. Devices that ChirpStack should know are left ``pending`` for the provisioner, which does the
gRPC calls outside the request's transaction, so a ChirpStack outage never leaves half a device.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateways.database import Connection, DuplicateKey, ValueRefused, database_errors
from ioc_api.queries.audit import audit
from ioc_api.queries.device_zones import check_scope, placed_in, zone_at
from ioc_api.schemas.devices import (
    Commissioning,
    DeviceClaim,
    DeviceCreate,
    DeviceList,
    DevicePublic,
    DeviceRecommission,
    DeviceUpdate,
    Provisioning,
    Stage,
    ZoneRef,
)
from ioc_core.catalogue import DeviceCatalogue
from ioc_core.errors import AlreadyExists, Conflict, Invalid, NotAllowed, NotFound
from ioc_core.settings import ChirpStackSettings

__all__ = [
    "HEALTH_JOIN",
    "HEALTH_OF_JOIN",
    "SCOPE_SQL",
    "DeviceFilters",
    "Registry",
    "Scope",
    "claim_device",
    "create_device",
    "decommission_device",
    "device_id",
    "get_device",
    "list_devices",
    "recommission_device",
    "refresh_commissioning",
    "scope_params",
    "update_device",
]

Scope = frozenset[str] | None
"""Zone codes a caller is limited to (a district code covers its wards); None is the whole city."""


@dataclass(frozen=True, slots=True)
class Registry:
    """What registering needs besides the database: the known models and codecs, and ChirpStack's mapping."""

    catalogue: DeviceCatalogue
    chirpstack: ChirpStackSettings


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


def scope_params(scope: Scope, **more: Any) -> dict[str, Any]:
    return {"scope": None if scope is None else sorted(scope), "unzoned": True, **more}


def device_id(conn: Connection, dev_eui: str, scope: Scope) -> tuple[int, str]:
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


def get_device(conn: Connection, dev_eui: str, scope: Scope) -> DevicePublic:
    ident, _status = device_id(conn, dev_eui, scope)
    row = conn.execute(f"SELECT {_COLUMNS} {_FROM} {HEALTH_OF_JOIN} {_STEPS_JOIN} WHERE d.id = %(id)s",
                       scope_params(scope, id=ident, ids=[ident])).fetchone()
    assert row is not None
    return _public(row)


def list_devices(conn: Connection, filters: DeviceFilters, scope: Scope, *, limit: int, offset: int) -> DeviceList:
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


def _codec(registry: Registry, model: str, codec_id: str | None) -> str:
    catalogue = registry.catalogue
    if codec_id is not None:
        if codec_id not in catalogue.codecs:
            raise Invalid(f"codec {codec_id!r} does not exist", field="codec_id")
        return codec_id
    found = catalogue.models.get(model)
    if found is None:
        known = ", ".join(sorted(catalogue.models)) or "none"
        raise Invalid(f"model {model!r} is unknown to every codec (known: {known}); name a codec_id",
                      field="model")
    return found


def _targets(registry: Registry, model: str) -> tuple[str | None, str | None, str]:
    """(application_id, device_profile_id, provisioning state) for a model."""
    settings = registry.chirpstack
    if not settings.enabled:
        return None, None, "not_configured"
    target = settings.target_for(model)
    if target is None:
        raise Invalid(f"no ChirpStack application and device profile are configured for model {model!r}",
                      field="model")
    return str(target.application_id), str(target.device_profile_id), "pending"


def _store_keys(conn: Connection, ident: int,
                body: DeviceCreate | DeviceClaim | DeviceUpdate | DeviceRecommission) -> None:
    if body.app_key is None:
        return
    conn.execute(
        """INSERT INTO device_keys (device_id, app_key, nwk_key) VALUES (%s, %s, %s)
           ON CONFLICT (device_id) DO UPDATE SET app_key = EXCLUDED.app_key, nwk_key = EXCLUDED.nwk_key""",
        (ident, body.app_key.get_secret_value(),
         body.nwk_key.get_secret_value() if body.nwk_key is not None else None),
    )


def _placement(conn: Connection, registry: Registry, body: DeviceCreate | DeviceClaim, scope: Scope,
               dev_eui: str) -> dict[str, Any]:
    here = zone_at(conn, body.longitude, body.latitude)
    check_scope(scope, here.code, here.parent, f"device {dev_eui}")
    codec_id = _codec(registry, body.model, body.codec_id)
    app, profile, provisioning = _targets(registry, body.model)
    if provisioning == "pending" and body.app_key is None and isinstance(body, DeviceCreate):
        raise Invalid("an OTAA AppKey is required: the platform registers devices in ChirpStack", field="app_key")
    return {
        "eui": dev_eui, "name": body.name, "description": body.description, "kind": body.kind,
        "model": body.model, "codec": codec_id, "lat": body.latitude, "lon": body.longitude, "zone": here.zone_id,
        "join_eui": body.join_eui, "interval": body.expected_interval_s, "tags": json.dumps(body.tags),
        "app": app, "profile": profile, "provisioning": provisioning, "public": body.public,
    }


_AUDITED = {"name": "name", "description": "description", "kind": "kind", "model": "model", "codec": "codec_id",
            "lat": "latitude", "lon": "longitude", "join_eui": "join_eui", "interval": "expected_interval_s",
            "app": "application_id", "profile": "device_profile_id", "provisioning": "provisioning",
            "public": "public"}


def _changes(values: Mapping[str, Any], body: DeviceCreate | DeviceClaim) -> dict[str, Any]:
    changes = {field: values[key] for key, field in _AUDITED.items() if values[key] not in (None, "")}
    changes["tags"] = body.tags
    if body.app_key is not None:
        changes["app_key"] = "***"
    if body.nwk_key is not None:
        changes["nwk_key"] = "***"
    return changes


def create_device(conn: Connection, body: DeviceCreate, registry: Registry, scope: Scope, *,
                  actor: str) -> DevicePublic:
    try:
        with database_errors("register the device"):
            _insert_device(conn, body, registry, scope, actor=actor)
    except ValueRefused as err:
        # A value PostgreSQL cannot store (NUL in text, a bad Unicode escape in a tag): this device's fault, so
        # an import refuses its row and goes on (the savepoint is rolled back already).
        raise Invalid(err.detail or "a value cannot be stored") from err
    return get_device(conn, body.dev_eui, None)


def _insert_device(conn: Connection, body: DeviceCreate, registry: Registry, scope: Scope, *, actor: str) -> None:
    with conn.transaction():
        values = _placement(conn, registry, body, scope, body.dev_eui)
        try:
            with database_errors("register the device"), conn.transaction():
                row = conn.execute(
                    """INSERT INTO devices (dev_eui, name, description, status, kind, model, codec_id, latitude,
                           longitude, zone_id, join_eui, expected_interval_s, tags, application_id,
                           device_profile_id, provisioning, provisioning_next_at, registered_at, public)
                       VALUES (%(eui)s, %(name)s, %(description)s, 'registered', %(kind)s, %(model)s, %(codec)s,
                           %(lat)s, %(lon)s, %(zone)s, %(join_eui)s, %(interval)s, %(tags)s::jsonb, %(app)s,
                           %(profile)s, %(provisioning)s,
                           CASE WHEN %(provisioning)s = 'pending' THEN now() END, now(), %(public)s)
                       RETURNING id""",
                    values,
                ).fetchone()
        except DuplicateKey as err:
            raise _exists(conn, body.dev_eui, err.constraint) from err
        assert row is not None
        if values["provisioning"] == "pending":
            _store_keys(conn, row[0], body)
        audit(conn, actor, "create", "device", body.dev_eui, _changes(values, body))


def _exists(conn: Connection, dev_eui: str, constraint: str | None) -> AlreadyExists:
    """Why a DevEUI cannot be registered again, with the way forward for each status."""
    row = conn.execute("SELECT status, decommissioned_at FROM devices WHERE dev_eui = %s", (dev_eui,)).fetchone()
    status, since = (row[0], row[1]) if row is not None else ("registered", None)
    if status == "decommissioned":
        when = f" on {since:%Y-%m-%d}" if since is not None else ""
        return AlreadyExists(f"device {dev_eui} was decommissioned{when}: recommission it instead of registering "
                             f"it again (POST /api/v1/devices/{dev_eui}/recommission, or `ioc devices recommission "
                             f"{dev_eui}`)", field="dev_eui", constraint=constraint)
    if status == "unregistered":
        return AlreadyExists(f"device {dev_eui} is known from its uplinks but unregistered: claim it "
                             f"(POST /api/v1/devices/{dev_eui}/claim)", field="dev_eui", constraint=constraint)
    return AlreadyExists(f"device {dev_eui} exists already", field="dev_eui", constraint=constraint)


def claim_device(conn: Connection, dev_eui: str, body: DeviceClaim, registry: Registry, scope: Scope, *,
                 actor: str) -> DevicePublic:
    """Register a device the ingest enrolled from ChirpStack's events (ChirpStack already has its keys), or a
    decommissioned device again: decommissioning is never a dead end."""
    dev_eui = dev_eui.lower()
    with conn.transaction():
        ident, status = device_id(conn, dev_eui, scope)
        if status not in ("unregistered", "decommissioned"):
            raise Conflict(f"device {dev_eui} is {status}, only unregistered or decommissioned devices can be "
                           "claimed", field="dev_eui")
        values = _placement(conn, registry, body, scope, dev_eui)
        if status == "decommissioned" and values["provisioning"] == "pending" and body.app_key is None:
            raise Invalid("an OTAA AppKey is required: ChirpStack forgot this device and its keys when it was "
                          "decommissioned", field="app_key")
        conn.execute(
            """UPDATE devices SET name = %(name)s, description = %(description)s, status = 'registered',
                   kind = %(kind)s, model = %(model)s, codec_id = %(codec)s, latitude = %(lat)s, longitude = %(lon)s,
                   zone_id = %(zone)s, join_eui = coalesce(%(join_eui)s, join_eui),
                   expected_interval_s = %(interval)s, tags = %(tags)s::jsonb,
                   application_id = coalesce(%(app)s, application_id),
                   device_profile_id = coalesce(%(profile)s, device_profile_id),
                   provisioning = %(provisioning)s,
                   provisioning_next_at = CASE WHEN %(provisioning)s = 'pending' THEN now() END,
                   registered_at = now(), claimed_at = now(), updated_at = now(), public = %(public)s,
                   decommissioned_at = NULL, provisioning_attempts = 0, provisioning_error = NULL
               WHERE id = %(id)s""",
            {**values, "id": ident},
        )
        if values["provisioning"] == "pending":
            _store_keys(conn, ident, body)
        audit(conn, actor, "claim", "device", dev_eui, {**_changes(values, body), "status": [status, "registered"]})
    return get_device(conn, dev_eui, None)


_UPDATABLE = ("name", "description", "kind", "model", "codec_id", "join_eui", "expected_interval_s", "public")


def update_device(conn: Connection, dev_eui: str, body: DeviceUpdate, registry: Registry, scope: Scope, *,
                  actor: str) -> DevicePublic:
    dev_eui = dev_eui.lower()
    sent = body.model_fields_set
    if ("latitude" in sent) != ("longitude" in sent):
        raise Invalid("send latitude and longitude together to move a device",
                      field="longitude" if "latitude" in sent else "latitude")
    for name in sent:
        if getattr(body, name) is None and name not in ("codec_id", "join_eui", "expected_interval_s"):
            raise Invalid(f"{name} cannot be null", field=name)
    with conn.transaction():
        ident, status = device_id(conn, dev_eui, scope)
        if status == "decommissioned":
            raise Conflict(f"device {dev_eui} is decommissioned", field="dev_eui")
        if status == "unregistered":
            raise Conflict(f"device {dev_eui} is unregistered: claim it (POST …/{dev_eui}/claim) to register it",
                           field="dev_eui")
        row = conn.execute(
            """SELECT name, description, kind, model, codec_id, join_eui, expected_interval_s, public, tags,
                      latitude, longitude, zone_id, provisioning FROM devices WHERE id = %s FOR UPDATE""",
            (ident,),
        ).fetchone()
        assert row is not None
        old: dict[str, Any] = dict(zip((*_UPDATABLE, "tags", "latitude", "longitude", "zone_id"), row[:12],
                                       strict=True))
        new = dict(old)
        for name in sent & {*_UPDATABLE, "tags"}:
            new[name] = getattr(body, name)
        if "model" in sent or "codec_id" in sent:
            new["codec_id"] = _codec(registry, new["model"] or "", body.codec_id if "codec_id" in sent else None)
        if "latitude" in sent:
            assert body.latitude is not None and body.longitude is not None
            new.update(latitude=body.latitude, longitude=body.longitude)
        if "zone" in sent:
            # The zone is checked against the position (sent, or stored), which stays where the zone comes from.
            assert body.zone is not None
            here = placed_in(conn, dev_eui, body.zone, (new["latitude"], new["longitude"]), sent="latitude" in sent)
            check_scope(scope, here.code, here.parent, f"the position of {dev_eui}")
            new["zone_id"] = here.zone_id
        elif "latitude" in sent:
            here = zone_at(conn, new["longitude"], new["latitude"])
            check_scope(scope, here.code, here.parent, f"the new position of {dev_eui}")
            new["zone_id"] = here.zone_id
        changes: dict[str, Any] = {k: [old[k], new[k]] for k in new if new[k] != old[k] and k != "zone_id"}
        if new["zone_id"] != old["zone_id"]:
            changes["zone"] = conn.execute(
                "SELECT (SELECT code FROM zones WHERE id = %s), (SELECT code FROM zones WHERE id = %s)",
                (old["zone_id"], new["zone_id"]),
            ).fetchone()
        app = profile = None
        provisioning = row[12]
        if registry.chirpstack.enabled and provisioning != "not_configured":
            app, profile, _ = _targets(registry, new["model"] or "")
            # ChirpStack shows name, description, tags and profile; anything it shows is pushed again.
            if changes.keys() & {"name", "description", "model", "join_eui", "tags"} or body.app_key is not None:
                provisioning = "pending"
        if body.app_key is not None:
            if provisioning != "pending":
                raise Invalid("keys can only be changed when the platform provisions ChirpStack", field="app_key")
            _store_keys(conn, ident, body)
            changes["app_key"] = "***"
        if not changes:
            return get_device(conn, dev_eui, None)
        conn.execute(
            """UPDATE devices SET name = %(name)s, description = %(description)s, kind = %(kind)s,
                   model = %(model)s, codec_id = %(codec_id)s, join_eui = %(join_eui)s,
                   expected_interval_s = %(expected_interval_s)s, public = %(public)s, tags = %(tags)s::jsonb,
                   latitude = %(latitude)s,
                   longitude = %(longitude)s, zone_id = %(zone_id)s,
                   application_id = coalesce(%(app)s, application_id),
                   device_profile_id = coalesce(%(profile)s, device_profile_id),
                   provisioning = %(provisioning)s,
                   provisioning_next_at = CASE WHEN %(provisioning)s = 'pending' THEN now()
                                               ELSE provisioning_next_at END,
                   provisioning_attempts = CASE WHEN %(provisioning)s = 'pending' THEN 0
                                                ELSE provisioning_attempts END,
                   updated_at = now()
               WHERE id = %(id)s""",
            {**new, "tags": json.dumps(new["tags"]), "app": app, "profile": profile, "provisioning": provisioning,
             "id": ident},
        )
        audit(conn, actor, "update", "device", dev_eui, changes)
    return get_device(conn, dev_eui, None)


def decommission_device(conn: Connection, dev_eui: str, scope: Scope, *, actor: str,
                        reason: str | None) -> DevicePublic:
    """Retire a device: its data stays, ChirpStack forgets it (when the platform put it there)."""
    dev_eui = dev_eui.lower()
    with conn.transaction():
        ident, status = device_id(conn, dev_eui, scope)
        if status == "decommissioned":
            raise Conflict(f"device {dev_eui} is decommissioned already", field="dev_eui")
        if scope is not None:
            # Zone-scoped callers see unregistered devices without a zone only so they can claim them; such a
            # device may be in any district, so retiring it is for whoever covers the whole city.
            zone = conn.execute("""SELECT z.code, z.parent_code FROM devices d LEFT JOIN zones z ON z.id = d.zone_id
                                   WHERE d.id = %s""", (ident,)).fetchone()
            if zone is None or zone[0] is None:
                raise NotAllowed(f"device {dev_eui} has no zone yet: claim it into one of your zones, or ask an "
                                 "admin to decommission it")
            check_scope(scope, zone[0], zone[1], f"device {dev_eui}")
        conn.execute(
            """UPDATE devices SET status = 'decommissioned', decommissioned_at = now(), updated_at = now(),
                   provisioning = CASE WHEN provisioning IN ('provisioned', 'pending', 'failed')
                                       THEN 'deprovision_pending' ELSE provisioning END,
                   provisioning_next_at = CASE WHEN provisioning IN ('provisioned', 'pending', 'failed')
                                               THEN now() ELSE NULL END,
                   provisioning_attempts = 0, provisioning_error = NULL
               WHERE id = %s""",
            (ident,),
        )
        conn.execute("DELETE FROM device_keys WHERE device_id = %s", (ident,))
        audit(conn, actor, "decommission", "device", dev_eui, {"status": [status, "decommissioned"],
                                                                 "reason": reason})
    return get_device(conn, dev_eui, None)


def recommission_device(conn: Connection, dev_eui: str, body: DeviceRecommission, registry: Registry, scope: Scope,
                        *, actor: str) -> DevicePublic:
    """Bring a decommissioned device back as it was registered (name, kind, model, tags), where it stood or at a
    new position; the same zone rules as registering it. ChirpStack forgot its keys, so they are sent again."""
    dev_eui = dev_eui.lower()
    sent = body.model_fields_set
    if ("latitude" in sent) != ("longitude" in sent):
        raise Invalid("send latitude and longitude together to move a device",
                      field="longitude" if "latitude" in sent else "latitude")
    with conn.transaction():
        ident, status = device_id(conn, dev_eui, scope)
        if status == "unregistered":
            raise Conflict(f"device {dev_eui} is unregistered, not decommissioned: claim it "
                           f"(POST /api/v1/devices/{dev_eui}/claim)", field="dev_eui")
        if status != "decommissioned":
            raise Conflict(f"device {dev_eui} is {status}, not decommissioned: nothing to recommission",
                           field="dev_eui")
        row = conn.execute(
            """SELECT d.model, d.codec_id, d.latitude, d.longitude, d.zone_id, z.code
               FROM devices d LEFT JOIN zones z ON z.id = d.zone_id WHERE d.id = %s FOR UPDATE OF d""",
            (ident,),
        ).fetchone()
        assert row is not None
        model, codec_id, old_lat, old_lon, old_zone_id, old_code = row
        lat, lon = (body.latitude, body.longitude) if "latitude" in sent else (old_lat, old_lon)
        if body.zone is not None:
            here = placed_in(conn, dev_eui, body.zone, (lat, lon), sent="latitude" in sent)
        elif lat is None or lon is None:
            raise Invalid(f"device {dev_eui} has no position: send latitude and longitude", field="latitude")
        else:
            here = zone_at(conn, lon, lat)
        check_scope(scope, here.code, here.parent, f"device {dev_eui}")
        codec = _codec(registry, model or "", codec_id)
        app, profile, provisioning = _targets(registry, model or "")
        if provisioning == "pending" and body.app_key is None:
            raise Invalid("an OTAA AppKey is required: ChirpStack forgot this device and its keys when it was "
                          "decommissioned", field="app_key")
        conn.execute(
            """UPDATE devices SET status = 'registered', decommissioned_at = NULL, registered_at = now(),
                   updated_at = now(), latitude = %(lat)s, longitude = %(lon)s, zone_id = %(zone)s,
                   codec_id = %(codec)s, application_id = coalesce(%(app)s, application_id),
                   device_profile_id = coalesce(%(profile)s, device_profile_id), provisioning = %(provisioning)s,
                   provisioning_next_at = CASE WHEN %(provisioning)s = 'pending' THEN now() END,
                   provisioning_attempts = 0, provisioning_error = NULL
               WHERE id = %(id)s""",
            {"lat": lat, "lon": lon, "zone": here.zone_id, "codec": codec, "app": app, "profile": profile,
             "provisioning": provisioning, "id": ident},
        )
        if provisioning == "pending":
            _store_keys(conn, ident, body)
        changes: dict[str, Any] = {"status": [status, "registered"], "reason": body.reason,
                                   "provisioning": provisioning}
        if (lat, lon) != (old_lat, old_lon):
            changes["latitude"], changes["longitude"] = [old_lat, lat], [old_lon, lon]
        if here.zone_id != old_zone_id:
            changes["zone"] = [old_code, here.code]
        if body.app_key is not None:
            changes["app_key"] = "***"
        audit(conn, actor, "recommission", "device", dev_eui, changes)
    return get_device(conn, dev_eui, None)
