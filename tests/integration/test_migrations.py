"""Migrations on a real PostgreSQL: install, run twice, run concurrently, and the names others rely on."""

from __future__ import annotations

import threading

import psycopg
import pytest

from gateways.migrations import applied, available, migrate, pending, storage_mode
from tests.fix_postgres import PgServer

pytestmark = [pytest.mark.integration, pytest.mark.both_modes]


def test_migrate_installs_everything_and_is_idempotent(empty_db_url: str, pg_server: PgServer) -> None:
    expected = pg_server.mode
    with psycopg.connect(empty_db_url) as conn:
        mode, done = migrate(conn, pg_server.choice)
        assert mode == expected
        assert [m.version for m in done] == [m.version for m in available()]
        assert pending(conn) == []
        mode_again, done_again = migrate(conn, pg_server.choice)
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


def test_concurrent_migrations_do_not_collide(empty_db_url: str, pg_server: PgServer) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with psycopg.connect(empty_db_url) as conn:
                migrate(conn, pg_server.choice)
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


def test_timescaledb_required_but_not_loaded_is_a_clear_error(empty_db_url: str, pg_server: PgServer) -> None:
    from gateways.migrations import MigrationError

    if pg_server.mode == "timescaledb":
        pytest.skip("this server has TimescaleDB loaded")
    with psycopg.connect(empty_db_url) as conn, pytest.raises(MigrationError, match=r"(?i)timescaledb"):
        migrate(conn, "on")


def test_an_edited_migration_is_refused_with_a_clear_error(db_url: str) -> None:
    from gateways.migrations import MigrationError

    with psycopg.connect(db_url, autocommit=True) as conn:
        stored = conn.execute("SELECT count(*) FROM schema_migrations WHERE checksum IS NOT NULL").fetchone()
        assert stored == (len(available()),)
        conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 2")
        with pytest.raises(MigrationError, match="0002_rollups differs from the one this database ran"):
            migrate(conn)


def test_auto_takes_timescaledb_only_when_the_extension_can_be_created(empty_db_url: str,
                                                                       pg_server: PgServer) -> None:
    from gateways.local_postgres import timescaledb_installed
    from gateways.migrations import TimescaleNotLoaded

    with psycopg.connect(empty_db_url) as conn:
        if pg_server.mode == "timescaledb":
            assert migrate(conn, "auto")[0] == "timescaledb"
            assert conn.execute("SELECT extname FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        elif timescaledb_installed():
            # Installed but not preloaded: neither mode is right, so the operator is told how to choose.
            with pytest.raises(TimescaleNotLoaded) as caught:
                migrate(conn, "auto")
            message = str(caught.value)
            assert "\n" not in message
            assert "shared_preload_libraries = 'timescaledb'" in message and "IOC_TIMESCALEDB=off" in message
            assert storage_mode(conn) is None and pending(conn) != []
        else:
            assert migrate(conn, "auto")[0] == "postgresql"


def test_off_installs_plain_postgresql_on_any_server(empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url) as conn:
        assert migrate(conn, "off")[0] == "postgresql"
        assert conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone() is None
        assert storage_mode(conn) == "postgresql"
