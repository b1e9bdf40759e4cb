"""The registry writes the ingest and the demo share: registering devices, with when they were registered."""

from __future__ import annotations

import psycopg
import pytest

from ingest.registry import DeviceRecord, register_devices

pytestmark = pytest.mark.integration


def test_registering_sets_registered_at_once(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO devices (dev_eui, name, status) VALUES ('00000000000000e2', 'enrolled', "
                     "'unregistered')")
        register_devices(conn, [DeviceRecord("00000000000000e1", "new"), DeviceRecord("00000000000000e2", "known")])
        first = dict(conn.execute("SELECT dev_eui, registered_at FROM devices WHERE dev_eui IN "
                                  "('00000000000000e1', '00000000000000e2')").fetchall())
        assert all(at is not None for at in first.values()) and len(first) == 2
        register_devices(conn, [DeviceRecord("00000000000000e1", "new, renamed")])
        again = conn.execute("SELECT registered_at FROM devices WHERE dev_eui = '00000000000000e1'").fetchone()
        assert again == (first["00000000000000e1"],)  # registering again keeps the first time
