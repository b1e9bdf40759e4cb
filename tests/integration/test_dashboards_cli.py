"""`ioc dashboards` as an operator runs it: build, check, push to the stand-in Grafana, thresholds."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from dashboards.alerts import RETIRED_RULES
from device_simulators.events import StreamOptions, generate
from device_simulators.fleet import build_fleet
from gateways.mqtt import InboundMessage
from ingest.codecs.library import CodecLibrary
from ingest.processor import BatchProcessor
from ingest.registry import register_devices, seed_zones
from ioc_cli.demo import device_record
from ioc_core.zones import load_default_zones
from tests.fix_postgres import PgServer
from tests.standins.grafana import GrafanaStandIn

pytestmark = [pytest.mark.integration, pytest.mark.both_modes]


def _ioc(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")} | {"COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "ioc_cli", *args], env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=120)


def test_build_writes_the_files_and_check_finds_them_current(tmp_path: Path) -> None:
    out = tmp_path / "grafana"
    stale = _ioc("dashboards", "build", "--out", str(out), "--check")
    assert stale.returncode == 1 and "stale:" in stale.stdout
    done = _ioc("dashboards", "build", "--out", str(out))
    assert done.returncode == 0 and "9 files" in done.stdout
    assert (out / "dashboards" / "ioc-city.json").exists()
    assert _ioc("dashboards", "build", "--out", str(out), "--check").returncode == 0
    bad = _ioc("dashboards", "build", "--out", str(out), "--timescaledb", "maybe")
    assert bad.returncode == 2 and "--timescaledb must be off, on or auto" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_push_creates_then_reports_nothing_changed(db_url: str, pg_server: PgServer) -> None:
    with GrafanaStandIn() as grafana:
        env = {"IOC_DATABASE_URL": db_url, "IOC_GRAFANA_URL": grafana.url, "IOC_GRAFANA_TOKEN": grafana.token}
        first = _ioc("dashboards", "push", env=env)
        assert first.returncode == 0, first.stderr
        assert "9 created, 0 updated, 0 unchanged" in first.stdout
        assert set(grafana.dashboards) == {"ioc-city", "ioc-incidents", "ioc-zone", "ioc-device", "ioc-network",
                                           "ioc-pipeline"}
        source = grafana.datasources["ioc-postgres"]
        # auto: the datasource follows the storage mode the schema was installed in
        assert source["jsonData"]["timescaledb"] is (pg_server.mode == "timescaledb")
        assert grafana.secrets["ioc-postgres"] == {}
        writes = grafana.writes()
        second = _ioc("dashboards", "push", env=env)
        assert second.returncode == 0 and "0 created, 0 updated, 9 unchanged" in second.stdout
        assert grafana.writes() == writes
        # Grafana reaches the database under its own read-only role, not the platform's.
        ro = {**env, "IOC_GRAFANA_DB_URL": "postgresql://grafana_ro:pw@db.internal:5432/ioc"}
        third = _ioc("dashboards", "push", env=ro)
        assert "updated    datasource" in third.stdout and "1 updated, 8 unchanged" in third.stdout
        assert grafana.datasources["ioc-postgres"]["user"] == "grafana_ro"
        assert grafana.secrets["ioc-postgres"] == {"password": "pw"}


def test_push_removes_the_rules_the_platform_replaced(db_url: str) -> None:
    with GrafanaStandIn() as grafana:
        env = {"IOC_DATABASE_URL": db_url, "IOC_GRAFANA_URL": grafana.url, "IOC_GRAFANA_TOKEN": grafana.token}
        assert _ioc("dashboards", "push", env=env).returncode == 0
        # A Grafana an earlier release pushed to: its group held the six rules now retired, and an operator had
        # moved one of them into a group of its own.
        group = grafana.rule_groups[("ioc", "IOC city")]
        watchdog = group["rules"][0]
        old = [{**watchdog, "uid": uid, "title": uid, "id": 1000 + i} for i, uid in enumerate(RETIRED_RULES)]
        group["rules"] = old[:5]
        grafana.rule_groups[("ioc", "old")] = {"title": "old", "folderUid": "ioc", "interval": 60,
                                               "rules": [{**old[5], "ruleGroup": "old"}]}
        again = _ioc("dashboards", "push", env=env)
        assert again.returncode == 0, again.stderr
        assert "0 created, 1 updated, 8 unchanged, 1 deleted" in again.stdout
        assert f"deleted    alert_rule  {list(RETIRED_RULES)[5]}" in again.stdout
        kept = [r["uid"] for group in grafana.rule_groups.values() for r in group["rules"]]
        assert kept == ["ioc-evaluator-stalled", "ioc-notifications-stuck"]
        writes = grafana.writes()
        last = _ioc("dashboards", "push", env=env)
        assert "0 created, 0 updated, 9 unchanged" in last.stdout and "deleted" not in last.stdout
        assert grafana.writes() == writes


def test_push_without_token_or_grafana_says_what_to_do(db_url: str) -> None:
    missing = _ioc("dashboards", "push", env={"IOC_DATABASE_URL": db_url})
    assert missing.returncode == 2 and "IOC_GRAFANA_TOKEN is not set" in missing.stderr
    down = _ioc("dashboards", "push", env={"IOC_DATABASE_URL": db_url, "IOC_GRAFANA_URL": "http://127.0.0.1:9",
                                           "IOC_GRAFANA_TOKEN": "x", "IOC_GRAFANA_TIMEOUT_S": "2"})
    message = " ".join(down.stderr.split())  # the console wraps long lines
    assert down.returncode == 2 and "Traceback" not in message
    assert message.endswith("cannot connect: Connection refused"), message


def test_check_runs_every_query_on_an_empty_database(db_url: str) -> None:
    done = _ioc("dashboards", "check", env={"IOC_DATABASE_URL": db_url})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    assert "Uplinks per gateway" in done.stdout and "Notifications not delivered" in done.stdout
    assert "annotation: Sự cố · Incidents" in done.stdout


def _fill(db_url: str, district: str) -> str:
    """Three hours of a small fleet's uplinks, from the devices of one district only (neither the first zone nor
    the first device by name), through the real batch path; the DevEUI of the device heard last."""
    fleet = build_fleet(40, seed=5)
    with psycopg.connect(db_url, autocommit=True) as conn:
        seed_zones(conn, load_default_zones())
        register_devices(conn, [device_record(d) for d in fleet.devices])
        conn.execute("INSERT INTO devices (dev_eui, name, kind) VALUES ('0000000000000001', 'A quiet one', "
                     "'water_level')")
        reporting = {str(r[0]) for r in conn.execute(
            """SELECT d.dev_eui FROM devices d JOIN zones z ON z.id = d.zone_id
               WHERE coalesce(z.parent_code, z.code) = %s OR z.code = %s""", (district, district))}
    now = datetime.now(UTC)
    options = StreamOptions(seed=5, start=now - timedelta(hours=3))
    messages = [m for m in itertools.takewhile(lambda m: m.time <= now.timestamp(), generate(fleet, options))
                if m.dev_eui in reporting]
    assert messages, f"the fleet has devices in {district}"
    processor = BatchProcessor(db_url, CodecLibrary.discover())
    try:
        processor.process([InboundMessage(m.topic, m.payload, mid=1, received_at=time.time(), session=0,
                                          duplicate=False) for m in messages])
    finally:
        processor.close()
    return max(messages, key=lambda m: m.time).dev_eui


def _table_rows(output: str) -> dict[tuple[str, str], int]:
    """(board, panel title) -> the rows its query returned, from the check's table (summed over refs)."""
    found: dict[tuple[str, str], int] = {}
    for line in output.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]
        if len(cells) == 6 and cells[0].startswith(("ioc-", "alerts")) and cells[3].isdigit():
            found[(cells[0], cells[1])] = found.get((cells[0], cells[1]), 0) + int(cells[3])
    return found


def test_check_picks_values_with_data_and_prints_rows_and_titles(db_url: str) -> None:
    """Without --var the Zone and Device boards run with a zone, kind and device that have data, so their
    panels return rows; titles show the values (`${metric}` becomes each metric), and rows are printed."""
    last = _fill(db_url, "son-tra")
    done = _ioc("dashboards", "check", "--rows", "1", env={"IOC_DATABASE_URL": db_url})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    zone = re.search(r"^ioc-zone: zone = son-tra; kind = (\w+); metric = (.+)$", done.stdout, re.MULTILINE)
    assert zone is not None, done.stdout[:2000]
    device = re.search(rf"^ioc-device: device = {last}; dmetric = (.+)$", done.stdout, re.MULTILINE)
    assert device is not None, done.stdout[:2000]
    rows = _table_rows(done.stdout)
    for panel in ("Devices by state", "Devices", *zone.group(2).split(", ")):
        assert rows.get(("ioc-zone", panel), 0) > 0, (panel, rows)
    # Whatever kind was heard from last (a street light has no battery panel rows), each of its metrics'
    # panels returns rows.
    for panel in ("Device", *device.group(1).split(", "), "Radio link", "Recent events"):
        assert rows.get(("ioc-device", panel), 0) > 0, (panel, rows)
    assert "${" not in done.stdout and "$metric" not in done.stdout
    assert last in done.stdout.split("ioc-device: device")[1].split("\n", 1)[1]  # the Device panel's first row
    given = _ioc("dashboards", "check", "--board", "device", "--var", "device=0000000000000001",
                 env={"IOC_DATABASE_URL": db_url})
    assert given.returncode == 0 and "ioc-device: device = 0000000000000001" in given.stdout


def test_thresholds_per_kind_and_device(db_url: str) -> None:
    env = {"IOC_DATABASE_URL": db_url}
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO devices (dev_eui, name, kind) VALUES ('a84041000181c061', 'Trạm Cẩm Lệ', "
                     "'water_level')")
    set_kind = _ioc("dashboards", "thresholds", "set", "water_level", "--kind", "water_level", "--alert", "1.2",
                    "--danger", "2.4", env=env)
    assert set_kind.returncode == 0, set_kind.stderr
    set_device = _ioc("dashboards", "thresholds", "set", "water_level", "--device", "A84041000181C061",
                      "--alert", "0.9", "--danger", "1.6", env=env)
    assert set_device.returncode == 0, set_device.stderr
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute("SELECT kind, device_id IS NOT NULL, alert_above, danger_above FROM alert_thresholds "
                            "WHERE metric = 'water_level' ORDER BY 2").fetchall()
    assert rows == [("water_level", False, 1.2, 2.4), (None, True, 0.9, 1.6)]
    listed = _ioc("dashboards", "thresholds", "list", env=env)
    assert "Trạm Cẩm Lệ" in listed.stdout
    watch = _ioc("dashboards", "thresholds", "set", "water_level", "--device", "a84041000181c061", "--watch", "0.5",
                 "--alert", "0.9", "--danger", "1.6", env=env)
    assert watch.returncode == 0 and "watch 0.5, alert 0.9, danger 1.6" in watch.stdout, watch.stderr
    rain = _ioc("dashboards", "thresholds", "set", "rainfall_3h", "--kind", "rain_gauge", "--watch", "30", "--alert",
                "60", "--danger", "120", env=env)
    assert rain.returncode == 0, rain.stderr
    with psycopg.connect(db_url, autocommit=True) as conn:
        levels = conn.execute("SELECT metric, watch_above, alert_above, danger_above FROM alert_thresholds "
                              "WHERE device_id IS NOT NULL OR metric = 'rainfall_3h' ORDER BY metric").fetchall()
    assert levels == [("rainfall_3h", 30, 60, 120), ("water_level", 0.5, 0.9, 1.6)]
    assert "watch above" in _ioc("dashboards", "thresholds", "list", env=env).stdout
    high = _ioc("dashboards", "thresholds", "set", "water_level", "--kind", "water_level", "--watch", "1.5",
                "--alert", "1.2", env=env)
    assert high.returncode == 2 and "--watch must be below --alert and --danger" in high.stderr
    silent_watch = _ioc("dashboards", "thresholds", "set", "silence", "--kind", "waste_bin", "--alert", "600",
                        "--watch", "300", env=env)
    assert silent_watch.returncode == 2 and "silence takes --alert SECONDS" in silent_watch.stderr
    wrong = _ioc("dashboards", "thresholds", "set", "water_level", "--kind", "water_level", "--alert", "3",
                 "--danger", "2", env=env)
    assert wrong.returncode == 2 and "--danger must be at least --alert" in wrong.stderr
    silence = _ioc("dashboards", "thresholds", "set", "silence", "--kind", "waste_bin", "--alert", "21600", env=env)
    assert silence.returncode == 0, silence.stderr
    no_danger = _ioc("dashboards", "thresholds", "set", "silence", "--kind", "waste_bin", "--alert", "600",
                     "--danger", "900", env=env)
    assert no_danger.returncode == 2 and "silence takes --alert SECONDS" in no_danger.stderr
    cleared = _ioc("dashboards", "thresholds", "clear", "water_level", "--device", "a84041000181c061", env=env)
    assert cleared.returncode == 0 and "removed 1 row" in cleared.stdout
