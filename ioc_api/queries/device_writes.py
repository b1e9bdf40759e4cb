"""Device changes: register, claim, update, decommission and recommission, each audited in its transaction.

The zone of a device always comes from its coordinates, and a caller may change only devices in its zones.
Devices that ChirpStack should know are left ``pending`` for the provisioner, which does the gRPC calls
outside the request's transaction, so a ChirpStack outage never leaves half a device. Reading devices is
``ioc_api.queries.devices``; the rules that are not SQL are ``ioc_api.registration``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from gateways.database import Connection, DuplicateKey, ValueRefused, database_errors
from ioc_api.queries.audit import audit
from ioc_api.queries.device_zones import ZoneScope, check_scope, placed_in, zone_at
from ioc_api.queries.devices import device_id, get_device
from ioc_api.registration import RegistrationRules
from ioc_api.schemas.devices import (
    DeviceClaim,
    DeviceCreate,
    DevicePublic,
    DeviceRecommission,
    DeviceUpdate,
)
from ioc_core.errors import AlreadyExists, Conflict, Invalid, NotAllowed

__all__ = ["claim_device", "create_device", "decommission_device", "recommission_device", "update_device"]


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


def _placement(conn: Connection, rules: RegistrationRules, body: DeviceCreate | DeviceClaim, scope: ZoneScope,
               dev_eui: str) -> dict[str, Any]:
    here = zone_at(conn, body.longitude, body.latitude)
    check_scope(scope, here.code, here.parent, f"device {dev_eui}")
    codec_id = rules.codec_for(body.model, body.codec_id)
    app, profile, provisioning = rules.chirpstack_target(body.model)
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


def create_device(conn: Connection, body: DeviceCreate, rules: RegistrationRules, scope: ZoneScope, *,
                  actor: str) -> DevicePublic:
    try:
        with database_errors("register the device"):
            _insert_device(conn, body, rules, scope, actor=actor)
    except ValueRefused as err:
        # A value PostgreSQL cannot store (NUL in text, a bad Unicode escape in a tag): this device's fault, so
        # an import refuses its row and goes on (the savepoint is rolled back already).
        raise Invalid(err.detail or "a value cannot be stored") from err
    return get_device(conn, body.dev_eui, None)


def _insert_device(conn: Connection, body: DeviceCreate, rules: RegistrationRules, scope: ZoneScope, *,
                   actor: str) -> None:
    with conn.transaction():
        values = _placement(conn, rules, body, scope, body.dev_eui)
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


def claim_device(conn: Connection, dev_eui: str, body: DeviceClaim, rules: RegistrationRules, scope: ZoneScope, *,
                 actor: str) -> DevicePublic:
    """Register a device the ingest enrolled from ChirpStack's events (ChirpStack already has its keys), or a
    decommissioned device again: decommissioning is never a dead end."""
    dev_eui = dev_eui.lower()
    with conn.transaction():
        ident, status = device_id(conn, dev_eui, scope)
        if status not in ("unregistered", "decommissioned"):
            raise Conflict(f"device {dev_eui} is {status}, only unregistered or decommissioned devices can be "
                           "claimed", field="dev_eui")
        values = _placement(conn, rules, body, scope, dev_eui)
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


def update_device(conn: Connection, dev_eui: str, body: DeviceUpdate, rules: RegistrationRules, scope: ZoneScope, *,
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
            new["codec_id"] = rules.codec_for(new["model"] or "", body.codec_id if "codec_id" in sent else None)
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
        if rules.chirpstack.enabled and provisioning != "not_configured":
            app, profile, _ = rules.chirpstack_target(new["model"] or "")
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


def decommission_device(conn: Connection, dev_eui: str, scope: ZoneScope, *, actor: str,
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


def recommission_device(conn: Connection, dev_eui: str, body: DeviceRecommission, rules: RegistrationRules,
                        scope: ZoneScope, *, actor: str) -> DevicePublic:
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
        codec = rules.codec_for(model or "", codec_id)
        app, profile, provisioning = rules.chirpstack_target(model or "")
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
