"""The ``ioc`` command as an operator types it: help, migrations, dead letters, bad configuration."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import psycopg
import pytest
from chirpstack_api import integration

from gateways.mqtt import InboundMessage
from ingest.codecs.library import CodecLibrary
from ingest.processor import BatchProcessor

pytestmark = pytest.mark.e2e


def ioc(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ioc_cli", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "command",
    [[], ["db"], ["codecs"], ["deadletters"], ["ingest"], ["simulate"], ["demo"], ["api"], ["users"], ["zones"],
     ["broker"], ["feed"]],
)
def test_help_everywhere(command: list[str]) -> None:
    done = ioc(*command, "--help")
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout


def test_migrate_twice_and_status(empty_db_url: str) -> None:
    first = ioc("db", "migrate", IOC_DATABASE_URL=empty_db_url, IOC_TIMESCALEDB="off")
    assert first.returncode == 0, first.stderr
    assert "applied 0001_core (postgresql)" in first.stdout
    second = ioc("db", "migrate", IOC_DATABASE_URL=empty_db_url)
    assert second.returncode == 0 and "up to date" in second.stdout
    status = ioc("db", "status", IOC_DATABASE_URL=empty_db_url)
    assert status.returncode == 0 and "0002" in status.stdout and "pending" not in status.stdout


def test_timescaledb_installed_but_not_loaded_is_one_line_and_exit_2(empty_db_url: str) -> None:
    from gateways.local_postgres import timescaledb_installed

    if not timescaledb_installed():
        pytest.skip("TimescaleDB is not installed on this machine")
    # The plain test server has the library installed but not in shared_preload_libraries.
    done = ioc("db", "migrate", IOC_DATABASE_URL=empty_db_url, IOC_TIMESCALEDB="auto")
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "shared_preload_libraries" in lines[0] and "IOC_TIMESCALEDB=off" in lines[0]


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"IOC_MQTT_URL": "http://broker:1883"}, "IOC_MQTT_URL"),
        ({"IOC_DATABASE_URL": "mysql://x"}, "IOC_DATABASE_URL"),
        ({"IOC_INGEST_BATCH_SIZE": "0"}, "IOC_INGEST_BATCH_SIZE"),
    ],
)
def test_bad_configuration_is_one_clear_line(env: dict[str, str], fragment: str) -> None:
    done = ioc("ingest", **env)
    assert done.returncode == 2
    assert fragment in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"IOC_CHIRPSTACK_API": "chirpstack:8080"}, "IOC_CHIRPSTACK_TOKEN is required"),
        ({"IOC_API_TIMEZONE": "Mars/Olympus"}, "IOC_API_TIMEZONE: unknown time zone"),
        ({"IOC_API_PORT": "0"}, "IOC_API_PORT"),
    ],
)
def test_api_refuses_bad_configuration_before_serving(env: dict[str, str], fragment: str) -> None:
    done = ioc("api", **env)
    assert done.returncode == 2, done.stderr
    assert fragment in done.stderr and "Traceback" not in done.stderr


def test_unreachable_database_is_a_clear_error() -> None:
    done = ioc("db", "status", IOC_DATABASE_URL="postgresql://ioc@127.0.0.1:1/ioc")
    assert done.returncode == 2
    assert "cannot reach the database (check IOC_DATABASE_URL)" in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr


def test_deadletters_list_and_replay(db_url: str) -> None:
    processor = BatchProcessor(db_url, CodecLibrary.discover())
    event = integration.UplinkEvent(
        deduplication_id=str(uuid.uuid4()), f_cnt=1, f_port=2, data=bytes.fromhex("016700fa"),
        device_info=integration.DeviceInfo(dev_eui="00000000000000d1", device_profile_id="p-1"),
    )
    topic = "application/a/device/00000000000000d1/event/up"
    garbage = InboundMessage(topic, b"{oops", 1, time.time(), 0, False)
    good = InboundMessage(topic, event.SerializeToString(), 2, time.time(), 0, False)
    assert processor.process([garbage, good]) is not None
    processor.close()
    listed = ioc("deadletters", "list", IOC_DATABASE_URL=db_url)
    assert listed.returncode == 0, listed.stderr
    assert "parse" in listed.stdout and "decode" in listed.stdout and "no codec" in listed.stdout
    still = ioc("deadletters", "replay", IOC_DATABASE_URL=db_url)
    assert still.returncode == 1 and "0 resolved, 2 still failing" in still.stdout
    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO device_profile_codecs VALUES ('p-1', 'cayenne-lpp')")
        conn.execute("UPDATE devices SET codec_id = 'cayenne-lpp' WHERE dev_eui = '00000000000000d1'")
    fixed = ioc("deadletters", "replay", "--stage", "decode", IOC_DATABASE_URL=db_url)
    assert fixed.returncode == 0 and "1 resolved, 0 still failing" in fixed.stdout
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM measurements").fetchone()
        assert row == (1,)


def test_users_create_list_revoke(db_url: str) -> None:
    created = ioc("users", "create", "--name", "tech-1", "--role", "technician", IOC_DATABASE_URL=db_url)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("ioc_") and "shown once" in created.stderr
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT key_hash FROM api_users WHERE name = 'tech-1'").fetchone()
        assert row is not None and key.encode() not in bytes(row[0])
    again = ioc("users", "create", "--name", "tech-1", "--role", "technician", IOC_DATABASE_URL=db_url)
    assert again.returncode == 2 and "exists already" in again.stderr
    bad = ioc("users", "create", "--name", "x", "--role", "king", IOC_DATABASE_URL=db_url)
    assert bad.returncode == 2 and "--role" in bad.stderr
    listed = ioc("users", "list", IOC_DATABASE_URL=db_url)
    assert "tech-1" in listed.stdout and "technician" in listed.stdout
    revoked = ioc("users", "revoke", "tech-1", IOC_DATABASE_URL=db_url)
    assert revoked.returncode == 0
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT revoked_at IS NOT NULL FROM api_users WHERE name = 'tech-1'").fetchone()
        assert row == (True,)
