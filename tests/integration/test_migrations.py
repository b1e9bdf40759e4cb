"""Migrations on a real PostgreSQL: install, run twice, run concurrently, and the names others rely on."""

from __future__ import annotations

import os
import threading

import psycopg
import pytest

from gateways.migrations import applied, available, migrate, pending, storage_mode

pytestmark = pytest.mark.integration


def test_migrate_installs_everything_and_is_idempotent(empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url) as conn:
        mode, done = migrate(conn)
        # TimescaleDB only with IOC_TEST_DOCKER=1 (a TimescaleDB container); never on these machines.
        expected = "timescaledb" if os.environ.get("IOC_TEST_DOCKER") == "1" else "postgresql"
        assert mode == expected
        assert [m.version for m in done] == [m.version for m in available()]
        assert pending(conn) == []
        mode_again, done_again = migrate(conn)
        assert (mode_again, done_again) == (expected, [])
        assert storage_mode(conn) == expected
        assert set(applied(conn)) == {m.version for m in available()}


def test_fixed_table_and_column_names(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}
        for name in ("zones", "devices", "gateways", "uplinks", "measurements", "device_events", "metrics",
                     "dead_letters", "ingest_stats", "rollup_device_hourly", "rollup_zone_hourly"):
            assert name in tables
        columns = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'uplinks'")}
        assert {"deduplication_id", "time", "device_id", "f_cnt", "f_port", "dr", "rssi", "snr",
                "gateway_count", "payload"} <= columns
        assert conn.execute("SELECT count(*) FROM metrics").fetchone() == (28,)
        assert conn.execute("SELECT unit FROM metrics WHERE name = 'pm2_5'").fetchone() == ("ug/m3",)


def test_concurrent_migrations_do_not_collide(empty_db_url: str) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with psycopg.connect(empty_db_url) as conn:
                migrate(conn)
        except BaseException as err:  # collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with psycopg.connect(empty_db_url) as conn:
        assert pending(conn) == []


@pytest.mark.skipif(os.environ.get("IOC_TEST_DOCKER") == "1", reason="the container has TimescaleDB")
def test_timescaledb_required_but_missing_is_a_clear_error(empty_db_url: str) -> None:
    from gateways.migrations import MigrationError

    with psycopg.connect(empty_db_url) as conn, pytest.raises(MigrationError, match="timescaledb"):
        migrate(conn, "on")


def test_an_edited_migration_is_refused_with_a_clear_error(db_url: str) -> None:
    from gateways.migrations import MigrationError

    with psycopg.connect(db_url, autocommit=True) as conn:
        stored = conn.execute("SELECT count(*) FROM schema_migrations WHERE checksum IS NOT NULL").fetchone()
        assert stored == (len(available()),)
        conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 2")
        with pytest.raises(MigrationError, match="0002_rollups differs from the one this database ran"):
            migrate(conn)
