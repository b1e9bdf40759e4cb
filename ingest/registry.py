"""The parts of the device registry the ingest and the demo need: zones, and devices with their zone."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gateways.database import Connection
from ioc_core.zones import Zone, multipolygon, polygon_text

__all__ = ["DeviceRecord", "register_devices", "seed_zones", "zone_id_at"]


def seed_zones(conn: Connection, zones: Sequence[Zone], *, approximate: bool = True) -> int:
    """Store zones whose code the database has never held; returns how many were new.

    Parts sharing a code become one zone with several rings. A code already stored (current, replaced by a
    newer version, or retired by ``ioc zones import``) is left alone, so seeding the demo set never undoes an
    import. A zone is marked approximate when ``approximate`` is true or its source says so.
    """
    by_code: dict[str, list[Zone]] = {}
    for zone in zones:
        by_code.setdefault(zone.code, []).append(zone)
    created = 0
    with conn.transaction():
        for code, parts in by_code.items():
            first = parts[0]
            row = conn.execute(
                """INSERT INTO zones (code, name, level, parent_code, boundary, approximate)
                   SELECT %(code)s, %(name)s, %(level)s, %(parent)s, %(boundary)s::jsonb, %(approximate)s
                   WHERE NOT EXISTS (SELECT 1 FROM zones WHERE code = %(code)s)
                   ON CONFLICT (code, valid_from) DO NOTHING RETURNING id""",
                {"code": code, "name": first.name, "level": first.level, "parent": first.parent,
                 "boundary": json.dumps(multipolygon(parts), ensure_ascii=False),
                 "approximate": approximate or first.approximate},
            ).fetchone()
            if row is None:
                continue
            created += 1
            for part in parts:
                conn.execute(
                    "INSERT INTO zone_rings (zone_id, ring) VALUES (%s, %s::polygon)",
                    (row[0], polygon_text(part.polygon[0])),
                )
    return created




def zone_id_at(conn: Connection, lon: float, lat: float) -> int | None:
    """The current zone containing the point: the database's ``zone_at`` (the smallest, then the lowest id)."""
    row = conn.execute("SELECT zone_at(%s, %s)", (lon, lat)).fetchone()
    return int(row[0]) if row and row[0] is not None else None


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    dev_eui: str
    name: str
    kind: str | None = None
    model: str | None = None
    codec_id: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    application_id: str | None = None
    device_profile_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


def register_devices(conn: Connection, devices: Iterable[DeviceRecord]) -> int:
    """Insert or update devices as registered, deriving each zone from its coordinates.

    ``registered_at`` is set when a device first becomes registered (also one the ingest enrolled) and kept
    when it is registered again, so the commissioning steps the API shows start from it.
    """
    count = 0
    with conn.transaction(), conn.cursor() as cur:
        for d in devices:
            cur.execute(
                """INSERT INTO devices (dev_eui, name, status, kind, model, codec_id, latitude, longitude,
                       zone_id, application_id, device_profile_id, tags, registered_at)
                   VALUES (%(eui)s, %(name)s, 'registered', %(kind)s, %(model)s, %(codec)s, %(lat)s, %(lon)s,
                       zone_at(%(lon)s, %(lat)s),
                       %(app)s, %(profile)s, %(tags)s::jsonb, now())
                   ON CONFLICT (dev_eui) DO UPDATE SET name = EXCLUDED.name, status = 'registered',
                       registered_at = coalesce(devices.registered_at, now()),
                       kind = EXCLUDED.kind, model = EXCLUDED.model, codec_id = EXCLUDED.codec_id,
                       latitude = EXCLUDED.latitude, longitude = EXCLUDED.longitude,
                       zone_id = EXCLUDED.zone_id, tags = EXCLUDED.tags, updated_at = now()""",
                {"eui": d.dev_eui, "name": d.name, "kind": d.kind, "model": d.model, "codec": d.codec_id,
                 "lat": d.latitude, "lon": d.longitude, "app": d.application_id,
                 "profile": d.device_profile_id, "tags": json.dumps(d.tags)},
            )
            count += 1
    return count

