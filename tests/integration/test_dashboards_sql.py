"""Every board panel's and alert rule's SQL, expanded as Grafana sends it, against a database the simulators filled.

The fleet's messages (two days of a flood scenario, with malformed ones) go through the real batch path,
which also writes ingest_stats; then the checks: every query runs, returns rows, and has the columns its
panel reads; and the values mean what the panels say (silent devices, thresholds, rollup or raw by range).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from dashboards.boards import all_boards
from dashboards.exercise import QueryCase, QueryRun, all_cases, parse_relative, run_case, sample_variables
from dashboards.macros import TimeRange
from dashboards.panels import Board
from device_simulators.events import StreamOptions, generate
from device_simulators.fleet import build_fleet
from gateways.mqtt import InboundMessage
from ingest.codecs.library import CodecLibrary
from ingest.processor import BatchProcessor
from ingest.registry import register_devices, seed_zones
from ingest.stats import IngestStats
from ioc_cli.demo import device_record
from ioc_core.zones import load_default_zones

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.both_modes]

HOURS = 50
SILENCED_FOR = timedelta(hours=8)


class City:
    def __init__(self, url: str, silenced: str, station: str, zone: str, alert_only: str) -> None:
        self.url = url
        self.silenced = silenced
        self.station = station
        self.zone = zone
        self.alert_only = alert_only

    @property
    def choices(self) -> dict[str, str]:
        return {"zone": self.zone, "kind": "water_level", "device": self.station}


@pytest.fixture(scope="module")
def city(pg_server: Any, template_db: str) -> Iterator[City]:
    name = f"ioc_boards_{os.getpid()}"
    with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    url = pg_server.url_for(name)
    fleet = build_fleet(160, seed=23)
    with psycopg.connect(url, autocommit=True) as conn:
        seed_zones(conn, load_default_zones())
        register_devices(conn, [device_record(d) for d in fleet.devices])
        row = conn.execute("""SELECT d.dev_eui, z.code FROM devices d JOIN zones z ON z.id = d.zone_id
                              WHERE d.kind = 'water_level' ORDER BY d.dev_eui""").fetchall()
    stations = [(str(r[0]), str(r[1])) for r in row]
    assert len(stations) >= 3, "the fleet has water level stations"
    station, zone = stations[0]
    silenced = stations[1][0]
    alert_only = stations[2][0]

    # The data ends now, when the module's tests start: they read "now" as Grafana would.
    now = datetime.now(UTC).replace(microsecond=0)
    options = StreamOptions(seed=23, start=now - timedelta(hours=HOURS), scenario="flood", malformed_ratio=0.01)
    cut = (now - SILENCED_FOR).timestamp()
    messages = [m for m in itertools.takewhile(lambda m: m.time <= now.timestamp(), generate(fleet, options))
                if not (m.dev_eui == silenced and m.time > cut)]
    processor = BatchProcessor(url, CodecLibrary.discover())
    stats = IngestStats("board-test", 1.0)
    try:
        for i in range(0, len(messages), 2000):
            chunk = [InboundMessage(m.topic, m.payload, mid=1, received_at=time.time(), session=0, duplicate=False)
                     for m in messages[i:i + 2000]]
            started = time.monotonic()
            done = processor.process(chunk, stats=stats)
            assert done is not None
            result, event_times = done
            # What IngestWorker's commit thread does after each batch, so ingest_stats gets real rows.
            stats.batch_done(messages=len(chunk), uplinks=result.uplinks, duplicates=result.duplicates,
                             measurements=result.measurements, device_events=result.device_events,
                             dead_letters=result.dead_letters, seconds=time.monotonic() - started,
                             event_times=event_times, received_times=[m.received_at for m in chunk],
                             committed_at=time.time())
            stats.report(processor.stats_connection())
    finally:
        processor.close()
    with psycopg.connect(url, autocommit=True) as conn:
        # The station's own alert level lies under its newest reading, the kind's default above everything.
        conn.execute("""INSERT INTO alert_thresholds (metric, device_id, alert_above, danger_above)
                        SELECT 'water_level', d.id, -4, 29 FROM devices d WHERE d.dev_eui = %s""", (station,))
        # This one sets only an alert level: its kind's danger level must not apply to it.
        conn.execute("""INSERT INTO alert_thresholds (metric, device_id, alert_above)
                        SELECT 'water_level', d.id, -4 FROM devices d WHERE d.dev_eui = %s""", (alert_only,))
        conn.execute("UPDATE alert_thresholds SET alert_above = -5, danger_above = -4.5 "
                     "WHERE kind = 'water_level' AND metric = 'water_level'")
        conn.execute("UPDATE gateways SET chirpstack_state = 'offline', chirpstack_synced_at = now() "
                     "WHERE id = (SELECT min(id) FROM gateways)")
        # ChirpStack last said "online" an hour ago and the sync stopped; the gateway has been quiet for two.
        conn.execute("UPDATE gateways SET chirpstack_state = 'online', "
                     "chirpstack_synced_at = now() - interval '1 hour', last_seen_at = now() - interval '2 hours' "
                     "WHERE id = (SELECT max(id) FROM gateways)")
        # A burst of parse failures now, well above the day's normal rate.
        conn.execute("""INSERT INTO dead_letters (fingerprint, topic, payload, stage, reason)
                        SELECT md5('burst' || i)::uuid, 'application/x/device/y/event/up', '\\x00', 'parse',
                               'invalid JSON: burst' FROM generate_series(1, 40) i""")
        if pg_server.mode == "timescaledb":
            # The scheduler may have refreshed the continuous aggregates while the batches were written; the
            # hours it materialised then miss the later rows until the next refresh (every 15 minutes in a
            # deployment). Run the refresh policies now, as that next run would.
            for (job,) in conn.execute("SELECT job_id FROM timescaledb_information.jobs "
                                       "WHERE proc_name = 'policy_refresh_continuous_aggregate'").fetchall():
                conn.execute("CALL run_job(%s)", (job,))
        conn.execute("VACUUM ANALYZE")
    yield City(url, silenced, station, zone, alert_only)
    with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run(city: City, board: Board | None, case: QueryCase, span: str | None = None) -> list[QueryRun]:
    time_range = parse_relative(span or case.time_from, datetime.now(UTC))
    with psycopg.connect(city.url, autocommit=True) as conn:
        variables = sample_variables(conn, board, time_range, city.choices) if board else []
        return run_case(conn, case, time_range, variables)


# Panels that read raw rows for short ranges and an hourly rollup for long ones (refs A and B): at any range
# exactly one of the pair has rows. Values: a short and a long range on either side of the switch.
_RANGE_SWITCHED = {
    ("ioc-zone", "${metric}"): ("now-24h", "now-7d"),
    ("ioc-device", "${dmetric}"): ("now-24h", "now-7d"),
    ("ioc-network", "Uplinks per gateway"): ("now-1h", "now-24h"),
    ("ioc-pipeline", "Ingest rate"): ("now-24h", "now-7d"),
    ("ioc-pipeline", "Lag"): ("now-24h", "now-7d"),
    ("ioc-pipeline", "Batches"): ("now-24h", "now-7d"),
}


@pytest.mark.parametrize(("board", "case"), all_cases(), ids=lambda v: v.uid if isinstance(v, Board) else
                         (f"{v.board}:{v.panel}:{v.ref_id}" if isinstance(v, QueryCase) else "alerts"))
def test_query_runs_and_has_the_columns_its_panel_reads(city: City, board: Board | None, case: QueryCase) -> None:
    runs = _run(city, board, case)
    assert runs, "at least one run (a repeated panel runs once per value)"
    for run in runs:
        missing = [c for c in case.columns if c not in run.columns]
        assert not missing, f"{case.panel}: columns {missing} missing from {run.columns}"
        if case.columns[:1] == ("time",):
            assert run.columns[0] == "time", "Grafana reads the first time column as the series' time"
    if (case.board, case.panel) in _RANGE_SWITCHED:
        short_span, long_span = _RANGE_SWITCHED[(case.board, case.panel)]
        short = sum(len(r.rows) for r in _run(city, board, case, short_span))
        long = sum(len(r.rows) for r in _run(city, board, case, long_span))
        assert (short > 0) == (case.ref_id == "A") and (long > 0) == (case.ref_id == "B"), (short, long)
    else:
        assert sum(len(r.rows) for r in runs) > 0, f"{case.panel} returned no rows on a filled database"


def _rows(city: City, board_uid: str | None, panel: str, ref: str = "A",
          span: str | None = None) -> list[dict[str, Any]]:
    for board, case in all_cases():
        if case.board == (board_uid or "alerts") and case.panel == panel and case.ref_id == ref:
            out = []
            for run in _run(city, board, case, span):
                out.extend(dict(zip(run.columns, row, strict=True)) for row in run.rows)
            return out
    raise AssertionError(f"no panel {panel!r}")


def test_silent_device_is_red_on_the_city_board_and_alerted(city: City) -> None:
    silent = {r["dev_eui"]: r for r in _rows(city, "ioc-city", "Late and silent devices")}
    assert silent[city.silenced]["state"] == "silent"
    assert float(silent[city.silenced]["silent_hours"]) >= SILENCED_FOR.total_seconds() / 3600 - 0.5
    states = {r["dev_eui"]: r["state"]
              for r in _rows(city, "ioc-city", "Devices: state, and the latest ${kind:text} reading")}
    assert states[city.silenced] == "silent" and states[city.station] == "reporting"
    alerted = {r["dev_eui"]: r for r in _rows(city, None, "Device silent")}
    # water level: 300 s interval, silent at 6 intervals = 30 min; 8 hours is 16 times that.
    assert alerted[city.silenced]["silence"] == pytest.approx(SILENCED_FOR.total_seconds() / 1800, rel=0.1)
    assert alerted[city.silenced]["allowed_s"] == "1800"
    assert city.station not in alerted


def test_silence_allowed_per_device_overrides_the_intervals(city: City) -> None:
    with psycopg.connect(city.url, autocommit=True) as conn:
        conn.execute("""INSERT INTO alert_thresholds (metric, device_id, alert_above)
                        SELECT 'silence', id, 86400 FROM devices WHERE dev_eui = %s""", (city.silenced,))
        try:
            alerted = {r["dev_eui"]: r for r in _rows(city, None, "Device silent")}
        finally:
            conn.execute("DELETE FROM alert_thresholds WHERE metric = 'silence'")
    # Eight hours of a day allowed: a third of its allowance, so the rule (above 1) does not fire.
    assert alerted[city.silenced]["allowed_s"] == "86400"
    assert alerted[city.silenced]["silence"] == pytest.approx(SILENCED_FOR.total_seconds() / 86400, rel=0.1)
    others = [r for eui, r in alerted.items() if eui != city.silenced]
    assert all(r["allowed_s"] != "86400" for r in others)


def test_water_alert_uses_the_station_threshold_before_the_kind_default(city: City) -> None:
    alert = {r["dev_eui"]: r for r in _rows(city, None, "Water above alert level")}
    danger = {r["dev_eui"]: r for r in _rows(city, None, "Water above danger level")}
    assert alert[city.station]["threshold_m"] == "-4" and danger[city.station]["threshold_m"] == "29"
    assert alert[city.station]["excess_m"] > 0 > danger[city.station]["excess_m"]
    # The kind's levels (-5, -4.5: every station above them) for stations without their own row.
    others = [r for eui, r in alert.items()
              if eui not in (city.station, city.alert_only, city.silenced) and r["metric"] == "water_level"]
    assert others and all(r["threshold_m"] == "-5" and r["excess_m"] > 0 for r in others)
    assert all(danger[r["dev_eui"]]["threshold_m"] == "-4.5" for r in others)
    # A station's own row counts as a whole: an alert level only means no danger rule, not its kind's.
    assert alert[city.alert_only]["threshold_m"] == "-4" and city.alert_only not in danger
    # The silenced station has no reading in its window (three intervals): the silence rule has it instead.
    assert city.silenced not in alert


def test_water_alert_reads_the_lower_of_the_two_newest_readings(city: City) -> None:
    with psycopg.connect(city.url, autocommit=True) as conn:
        rows = conn.execute("""SELECT m.value FROM measurements m JOIN devices d ON d.id = m.device_id
                               JOIN metrics mt ON mt.id = m.metric_id
                               WHERE d.dev_eui = %s AND mt.name = 'water_level' AND m.quality = 0
                               ORDER BY m.time DESC LIMIT 2""", (city.station,)).fetchall()
    alert = {r["dev_eui"]: r for r in _rows(city, None, "Water above alert level")}
    assert alert[city.station]["excess_m"] == pytest.approx(min(r[0] for r in rows) + 4)


def test_coverage_answers_from_raw_rows_and_from_the_rollup(city: City) -> None:
    short = {(r["gateway"], r["zone"]): r for r in _rows(city, "ioc-network", "Coverage", span="now-1h")}
    long = {(r["gateway"], r["zone"]): r for r in _rows(city, "ioc-network", "Coverage", span="now-24h")}
    assert short and long and set(short) <= set(long)
    assert all(long[k]["uplinks"] >= short[k]["uplinks"] for k in short)
    assert all(-140 <= float(r["rssi_avg"]) <= 0 for r in long.values())


def test_gateway_offline_and_dead_letter_burst_fire(city: City) -> None:
    gateways = _rows(city, None, "Gateway offline")
    assert len(gateways) > 2 and sum(r["offline"] for r in gateways) == 2
    board = {r["gateway_eui"]: r["status"] for r in _rows(city, "ioc-network", "Gateways")}
    assert list(board.values()).count("offline") == 2 and next(iter(board.values())) == "offline"
    dead = {r["stage"]: r["excess"] for r in _rows(city, None, "Dead letters rising")}
    assert dead["parse"] > 0


def test_zone_tiles_and_vietnamese_names(city: City) -> None:
    tiles = {r["zone"]: r["reporting"] for r in _rows(city, "ioc-city", "Devices reporting")}
    assert "Hải Châu" in tiles and "Sơn Trà" in tiles and sum(tiles.values()) > 100
    levels = {r["zone"]: r["max_water_level_m"] for r in _rows(city, "ioc-city", "Max water level (m)")}
    assert any(v is not None for v in levels.values())
    with psycopg.connect(city.url, autocommit=True) as conn:
        board = next(b for b in all_boards() if b.uid == "ioc-zone")
        end = datetime.now(UTC)
        time_range = TimeRange(end - timedelta(hours=6), end)
        zone = sample_variables(conn, board, time_range)[0]
        names = [r[1] for r in conn.execute("SELECT code, name FROM zones WHERE valid_to IS NULL")]
    assert zone.name == "zone" and zone.values
    assert "Ngũ Hành Sơn" in names


def test_rate_and_lag_come_from_the_workers_stats(city: City) -> None:
    rate = _rows(city, "ioc-pipeline", "Ingest rate")
    assert rate and sum(r["uplinks stored/s"] for r in rate) > 0
    now = _rows(city, "ioc-pipeline", "Now")
    assert now[0]["workers"] == 1 and now[0]["open dead letters"] >= 40


def test_hourly_rollups_match_the_rows_they_summarise(city: City) -> None:
    with psycopg.connect(city.url, autocommit=True) as conn:
        raw = conn.execute("""SELECT date_trunc('hour', time, 'UTC'), gateway_id, zone_id, count(*), sum(rssi),
                                     min(rssi), round(sum(snr::float8)::numeric, 3), min(snr)
                              FROM uplinks GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""").fetchall()
        rolled = conn.execute("""SELECT bucket, gateway_id, zone_id, n, rssi_total, rssi_min,
                                        round(snr_total::numeric, 3), snr_min
                                 FROM rollup_gateway_hourly ORDER BY 1, 2, 3""").fetchall()
        assert len(raw) > 50 and rolled == raw
        stats = conn.execute("""SELECT date_trunc('hour', time, 'UTC'), worker, sum(uplinks), sum(batches),
                                       round(sum(interval_s::float8)::numeric, 3)
                                FROM ingest_stats GROUP BY 1, 2 ORDER BY 1, 2""").fetchall()
        hourly = conn.execute("""SELECT bucket, worker, uplinks, batches, round(seconds::numeric, 3)
                                 FROM rollup_ingest_hourly ORDER BY 1, 2""").fetchall()
        assert stats and hourly == stats
