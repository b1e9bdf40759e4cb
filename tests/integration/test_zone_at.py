"""The zone at a point is one database function, ``zone_at``: the registry, the API's moves and the zone import
all answer with it, ties included."""

from __future__ import annotations

import psycopg
import pytest

from ingest.registry import DeviceRecord, register_devices, seed_zones, zone_id_at
from ioc_api.queries.device_zones import zone_at as api_zone_at
from ioc_core.zones import load_default_zones

pytestmark = [pytest.mark.integration, pytest.mark.both_modes]

IN_WARD = (108.215, 16.050)  # inside both wards made below, and Hải Châu
IN_HAI_CHAU = (108.225, 16.035)  # Hải Châu, outside those wards
OUTSIDE = (107.0, 15.0)


def _zone(conn: psycopg.Connection, code: str) -> int:
    row = conn.execute("SELECT id FROM zones WHERE code = %s AND valid_to IS NULL", (code,)).fetchone()
    assert row is not None
    return int(row[0])


def _ward(conn: psycopg.Connection, code: str, lon: float, lat: float, half: float) -> int:
    row = conn.execute(
        """INSERT INTO zones (code, name, level, parent_code, boundary)
           VALUES (%s, %s, 'ward', 'hai-chau', '{}'::jsonb) RETURNING id""", (code, code)).fetchone()
    assert row is not None
    conn.execute("INSERT INTO zone_rings (zone_id, ring) VALUES (%s, %s::polygon)",
                 (row[0], f"(({lon - half},{lat - half}),({lon + half},{lat - half}),"
                          f"({lon + half},{lat + half}),({lon - half},{lat + half}))"))
    return int(row[0])


def test_every_caller_answers_with_the_one_function_ties_included(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        seed_zones(conn, load_default_zones())
        district = _zone(conn, "hai-chau")
        lon, lat = IN_WARD
        # Two current wards overlapping at IN_WARD: same level, so the lower id must win, whichever ring the
        # planner meets first (the later one is larger, so its ring comes first in no particular order).
        first = _ward(conn, "ward-a", lon, lat, 0.005)
        later = _ward(conn, "ward-b", lon + 0.002, lat, 0.008)
        assert later > first
        expected = {IN_WARD: first, IN_HAI_CHAU: district, OUTSIDE: None}
        for (x, y), zone_id in expected.items():
            row = conn.execute("SELECT zone_at(%s, %s)", (x, y)).fetchone()
            assert row == (zone_id,)
            assert zone_id_at(conn, x, y) == zone_id
            if zone_id is not None:
                assert api_zone_at(conn, x, y).zone_id == zone_id
        assert conn.execute("SELECT zone_at(NULL, NULL)").fetchone() == (None,)
        register_devices(conn, [DeviceRecord(dev_eui=f"00000000000000c{i}", name=f"c{i}", kind="water_level",
                                             latitude=y, longitude=x)
                                for i, (x, y) in enumerate(expected)])
        stored = dict(conn.execute("SELECT dev_eui, zone_id FROM devices ORDER BY dev_eui").fetchall())
        assert stored == {f"00000000000000c{i}": zone_id for i, zone_id in enumerate(expected.values())}
