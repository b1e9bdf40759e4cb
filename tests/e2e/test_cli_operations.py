"""``ioc operations``: one evaluation from the command line, and the service stopping cleanly on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime

import psycopg
import pytest

from gateways.wakeups import READINGS, notify
from ingest.registry import DeviceRecord, register_devices, seed_zones
from ioc_core.zones import load_default_zones
from tests.db_rows import insert_measurement, insert_uplink
from tests.e2e.test_cli import ioc
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e


def test_evaluate_prints_the_changes_then_nothing(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        seed_zones(conn, load_default_zones())
    first = ioc("operations", "evaluate", IOC_DATABASE_URL=db_url)
    assert first.returncode == 0, first.stderr
    assert "hai-chau" in first.stdout and "no stations" in first.stdout
    again = ioc("operations", "evaluate", "--at", "2030-01-01T00:00:00+07:00", IOC_DATABASE_URL=db_url)
    assert again.returncode == 0 and again.stdout.strip() == "no status changed"
    bad = ioc("operations", "evaluate", "--at", "tomorrow", IOC_DATABASE_URL=db_url)
    assert bad.returncode != 0 and "ISO 8601" in bad.stderr and "Traceback" not in bad.stderr


def test_the_service_evaluates_and_stops_on_sigterm(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        seed_zones(conn, load_default_zones())
    env = {**os.environ, "IOC_DATABASE_URL": db_url, "IOC_OPERATIONS_INTERVAL_S": "0.2"}
    proc = subprocess.Popen([sys.executable, "-m", "ioc_cli", "operations", "run"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with psycopg.connect(db_url, autocommit=True) as conn:
            wait_for(lambda: conn.execute("SELECT count(*) FROM zone_hazard_status").fetchone()[0] > 0,
                     timeout_s=30, what="the first evaluation round")
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "hai-chau flood: - -> unknown (no stations)" in err


def test_the_service_wakes_on_the_ingests_notification(db_url: str) -> None:
    """With the timer a minute away, a commit that notifies ioc_readings is evaluated within seconds; a second
    service stands by and does nothing until the first stops."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        seed_zones(conn, load_default_zones())
        register_devices(conn, [DeviceRecord(dev_eui="00000000000000d1", name="gauge", kind="water_level",
                                             latitude=16.060, longitude=108.222)])
        device = conn.execute("SELECT id FROM devices").fetchone()[0]
    env = {**os.environ, "IOC_DATABASE_URL": db_url, "IOC_OPERATIONS_INTERVAL_S": "60"}
    command = [sys.executable, "-m", "ioc_cli", "operations", "run"]
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = None
    try:
        with psycopg.connect(db_url, autocommit=True) as conn:
            wait_for(lambda: conn.execute("SELECT count(*) FROM zone_hazard_status").fetchone()[0] > 0,
                     timeout_s=30, what="the catch-up round")
            second = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            wait_for(lambda: conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                          "AND application_name = 'ioc-operations'").fetchone()[0] == 2,
                     timeout_s=30, what="the second service connected, standing by")
            now = datetime.now(UTC)
            with conn.transaction():
                insert_uplink(conn, device, now)
                insert_measurement(conn, device, "water_level", 2.0, now)
                notify(conn, READINGS)
            wait_for(lambda: conn.execute("SELECT status FROM zone_hazard_status WHERE zone_code = 'hai-chau' "
                                          "AND hazard = 'flood'").fetchone() == ("alert",),
                     timeout_s=10, what="a round woken by the notification")
        for proc in (first, second):
            proc.send_signal(signal.SIGTERM)
        _out, first_err = first.communicate(timeout=30)
        _out, second_err = second.communicate(timeout=30)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert first.returncode == 0 and second.returncode == 0, (first_err, second_err)
    assert "hai-chau flood: unknown -> alert" in first_err
    # The round's alarms and incidents are in the service's log too.
    assert re.search(r"alarm \d+ opened: hazard 00000000000000d1:water_level ", first_err), first_err
    assert re.search(r"incident \d+ opened \(\w+\): ", first_err), first_err
    assert "active evaluator" in first_err and "active evaluator" not in second_err
