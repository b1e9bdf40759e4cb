"""``ioc operations``: one evaluation from the command line, and the service stopping cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psycopg
import pytest

from ingest.registry import seed_zones
from ioc_core.zones import load_default_zones
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
