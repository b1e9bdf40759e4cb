"""Rows written straight into the database, for tests that set up a moment in a fleet's life without the ingest."""

from __future__ import annotations

import uuid
from datetime import datetime

import psycopg

from ingest.registry import DeviceRecord, register_devices, seed_zones
from ioc_core.zones import Ring, Zone, load_default_zones

__all__ = ["insert_measurement", "insert_uplink", "place_stations", "square"]


def square(lon: float, lat: float, half: float = 0.002) -> tuple[Ring]:
    """A small square zone boundary around a point (wards drawn inside a district for a test)."""
    return (((lon - half, lat - half), (lon + half, lat - half), (lon + half, lat + half), (lon - half, lat + half),
             (lon - half, lat - half)),)


def place_stations(conn: psycopg.Connection, wards: list[Zone],
                   devices: dict[str, tuple[str, Zone]]) -> dict[str, int]:
    """The default districts with ``wards`` under them, and each device (dev_eui → kind, ward) registered at its
    ward's centre; the devices' ids by dev_eui."""
    seed_zones(conn, [*load_default_zones(), *wards])
    records = []
    for eui, (kind, ward) in devices.items():
        west, south, east, north = ward.bounds
        records.append(DeviceRecord(dev_eui=eui, name=f"station {eui[-2:]}", kind=kind,
                                    latitude=(south + north) / 2, longitude=(west + east) / 2))
    register_devices(conn, records)
    return dict(conn.execute("SELECT dev_eui, id FROM devices").fetchall())


def insert_uplink(conn: psycopg.Connection, device_id: int, at: datetime) -> None:
    """An uplink of ``device_id`` at ``at``: what device_health counts as the device being seen."""
    conn.execute(
        """INSERT INTO uplinks (time, received_at, device_id, deduplication_id, f_cnt, f_port, dr, confirmed, adr,
                                gateway_count, payload, decode_status)
           VALUES (%s, %s, %s, %s, 1, 1, 5, false, true, 1, '\\x00', 'ok')""",
        (at, at, device_id, uuid.uuid4()))


def insert_measurement(conn: psycopg.Connection, device_id: int, metric: str, value: float, at: datetime) -> None:
    """A good-quality reading of ``metric`` by ``device_id`` at ``at``, in the device's zone."""
    conn.execute(
        """INSERT INTO measurements (time, device_id, zone_id, metric_id, value)
           SELECT %s, d.id, d.zone_id, m.id, %s FROM devices d, metrics m WHERE d.id = %s AND m.name = %s""",
        (at, value, device_id, metric))
