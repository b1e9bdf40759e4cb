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
    def __init__(self, url: str, silenced: str, station: str, zone: str, alert_only: str,
                 others: list[str]) -> None:
        self.url = url
        self.others = others  # district codes other than the station's, by name
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
        others = _operations(conn, zone, station, silenced)
        if pg_server.mode == "timescaledb":
            # The scheduler may have refreshed the continuous aggregates while the batches were written; the
            # hours it materialised then miss the later rows until the next refresh (every 15 minutes in a
            # deployment). Run the refresh policies now, as that next run would.
            for (job,) in conn.execute("SELECT job_id FROM timescaledb_information.jobs "
                                       "WHERE proc_name = 'policy_refresh_continuous_aggregate'").fetchall():
                conn.execute("CALL run_job(%s)", (job,))
        conn.execute("VACUUM ANALYZE")
    yield City(url, silenced, station, zone, alert_only, others)
    with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _operations(conn: psycopg.Connection[Any], zone: str, station: str, silenced: str) -> list[str]:
    """What the operations evaluator and the incident workflow would have written: statuses, four incidents
    (new and escalated in the station's district, acknowledged, in progress, resolved), alarms and the outbox."""
    others = [str(r[0]) for r in conn.execute(
        "SELECT code FROM zones WHERE level = 'district' AND valid_to IS NULL AND code <> %s ORDER BY name",
        (zone,)).fetchall()]
    a, b, c, d = others[:4]  # others[4:] have no status row at all: never evaluated
    conn.execute("""INSERT INTO zone_hazard_status (zone_code, hazard, status, since, evaluated_at, reason)
                    VALUES (%(z)s, 'flood', 'danger', now() - interval '2 hours', now() - interval '10 minutes',
                            'danger: 1 station'),
                           (%(z)s, 'air_quality', 'normal', now() - interval '1 day', now() - interval '10 minutes',
                            'normal: 2 stations'),
                           (%(a)s, 'flood', 'unknown', now() - interval '3 hours', now() - interval '10 minutes',
                            'none of its 2 station(s) reported in time'),
                           (%(a)s, 'heavy_rain', 'normal', now() - interval '1 day', now() - interval '10 minutes',
                            'normal: 1 station'),
                           (%(b)s, 'flood', 'unknown', now() - interval '1 day', now() - interval '10 minutes',
                            'no stations'),
                           (%(c)s, 'flood', 'watch', now() - interval '1 hour', now() - interval '10 minutes',
                            'watch: 1 station'),
                           (%(c)s, 'air_quality', 'normal', now() - interval '1 day', now() - interval '10 minutes',
                            'normal: 1 station'),
                           (%(d)s, 'air_quality', 'normal', now() - interval '1 day', now() - interval '10 minutes',
                            'normal: 1 station')""", {"z": zone, "a": a, "b": b, "c": c, "d": d})
    rows = [  # zone, hazard, severity, state, opened, acknowledged, resolved, escalated (hours ago)
        (zone, "flood", "critical", "new", 2.0, None, None, 1.9),
        (a, "air_quality", "major", "acknowledged", 5.0, 5 - 1 / 6, None, None),
        (c, "flood", "major", "in_progress", 3.0, 2.5, None, None),
        (a, "heavy_rain", "minor", "resolved", 30.0, 30 - 1 / 6, 26.0, None),
    ]
    ids = []
    for z, hazard, severity, state, *hours in rows:
        ago = ["now() - make_interval(secs => %s * 3600)" if h is not None else "NULL" for h in hours]
        row = conn.execute(
            f"""INSERT INTO incidents (zone_code, hazard, kind, severity, state, title, owner, opened_at, updated_at,
                                       acknowledged_at, resolved_at, escalated_at, escalation_level)
                VALUES (%s, %s, %s, %s, %s, %s, %s, {ago[0]}, now(), {ago[1]}, {ago[2]}, {ago[3]}, %s)
                RETURNING id""",
            (z, hazard, hazard, severity, state, f"{hazard} in {z}", "city" if hours[3] else z,
             *[h for h in hours if h is not None], 1 if hours[3] else 0)).fetchone()
        assert row is not None
        ids.append(row[0])
    conn.execute("""INSERT INTO alarms (source, subject, hazard, zone_code, device_eui, severity, state, message,
                                        first_seen, last_seen, count, cleared_at, incident_id)
                    VALUES ('hazard', %(z)s || ':flood:' || %(st)s, 'flood', %(z)s, %(st)s, 'critical', 'active',
                            'water above danger', now() - interval '2 hours', now(), 24, NULL, %(i)s),
                           ('device_silent', %(si)s, NULL, %(z)s, %(si)s, 'minor', 'active', 'silent',
                            now() - interval '7 hours', now(), 80, NULL, NULL),
                           ('gateway_offline', 'gw-1', NULL, NULL, NULL, 'major', 'active', 'offline',
                            now() - interval '1 hour', now(), 12, NULL, NULL),
                           ('dead_letters', 'parse', NULL, NULL, NULL, 'minor', 'cleared', 'rising',
                            now() - interval '1 day', now() - interval '20 hours', 3, now() - interval '20 hours',
                            NULL)""", {"z": zone, "st": station, "si": silenced, "i": ids[0]})
    conn.execute("""INSERT INTO notification_outbox (idempotency_key, event, channel, address, payload, state,
                                                     created_at, next_attempt_at, sent_at)
                    VALUES ('k-stuck', 'escalated', 'email', 'ops@example.org', '{}', 'pending',
                            now() - interval '20 minutes', now() - interval '10 minutes', NULL),
                           ('k-sent', 'incident_new', 'webhook', 'http://127.0.0.1:9/hook', '{}', 'sent',
                            now() - interval '2 hours', now() - interval '2 hours', now() - interval '2 hours')""")
    return others


def _run(city: City, board: Board | None, case: QueryCase, span: str | None = None,
         choices: dict[str, str] | None = None) -> list[QueryRun]:
    time_range = parse_relative(span or case.time_from, datetime.now(UTC))
    with psycopg.connect(city.url, autocommit=True) as conn:
        variables = sample_variables(conn, board, time_range, {**city.choices, **(choices or {})}) if board else []
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
          span: str | None = None, choices: dict[str, str] | None = None) -> list[dict[str, Any]]:
    for board, case in all_cases():
        if case.board == (board_uid or "alerts") and case.panel == panel and case.ref_id == ref:
            out = []
            for run in _run(city, board, case, span, choices):
                out.extend(dict(zip(run.columns, row, strict=True)) for row in run.rows)
            return out
    raise AssertionError(f"no panel {panel!r}")


def test_silent_device_is_red_on_the_city_board(city: City) -> None:
    silent = {r["dev_eui"]: r for r in _rows(city, "ioc-city", "Late and silent devices")}
    assert silent[city.silenced]["state"] == "silent"
    assert float(silent[city.silenced]["silent_hours"]) >= SILENCED_FOR.total_seconds() / 3600 - 0.5
    states = {r["dev_eui"]: r["state"]
              for r in _rows(city, "ioc-city", "Devices: state, and the latest ${kind:text} reading")}
    assert states[city.silenced] == "silent" and states[city.station] == "reporting"


def test_coverage_answers_from_raw_rows_and_from_the_rollup(city: City) -> None:
    short = {(r["gateway"], r["zone"]): r for r in _rows(city, "ioc-network", "Coverage", span="now-1h")}
    long = {(r["gateway"], r["zone"]): r for r in _rows(city, "ioc-network", "Coverage", span="now-24h")}
    assert short and long and set(short) <= set(long)
    assert all(long[k]["uplinks"] >= short[k]["uplinks"] for k in short)
    assert all(-140 <= float(r["rssi_avg"]) <= 0 for r in long.values())


def test_offline_gateways_on_the_network_board(city: City) -> None:
    board = {r["gateway_eui"]: r["status"] for r in _rows(city, "ioc-network", "Gateways")}
    assert list(board.values()).count("offline") == 2 and next(iter(board.values())) == "offline"


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


def test_incidents_board_counts_open_incidents_by_state_severity_and_zone(city: City) -> None:
    states = {r["state"]: r["incidents"] for r in _rows(city, "ioc-incidents",
                                                         "Sự cố đang mở theo trạng thái · Open incidents by state")}
    # The resolved one is not open.
    assert states == {"mới · new": 1, "đã tiếp nhận · acknowledged": 1, "đang xử lý · in progress": 1}
    severities = [(r["severity"], r["incidents"]) for r in _rows(
        city, "ioc-incidents", "Sự cố đang mở theo mức độ · Open incidents by severity")]
    assert severities == [("Khẩn cấp · Critical", 1), ("Nghiêm trọng · Major", 2), ("Nhẹ · Minor", 0),
                          ("Thông tin · Info", 0)]
    zones = _rows(city, "ioc-incidents", "Theo khu vực · By zone")
    first = zones[0]  # the critical one first
    assert first["zone_code"] == city.zone
    assert (first["open"], first["unacknowledged"], first["worst_severity"], first["escalation_level"]) == (
        1, 1, "critical", 1)
    listed = _rows(city, "ioc-incidents", "Sự cố đang mở · Open incidents")
    assert [r["severity"] for r in listed] == ["critical", "major", "major"]
    assert listed[0]["active_alarms"] == 1 and listed[0]["owner"] == "city"
    assert listed[1]["opened_at"] < listed[2]["opened_at"]  # the older of the two major ones first


def test_incidents_board_response_times_and_escalations(city: City) -> None:
    (times,) = _rows(city, "ioc-incidents", "Thời gian phản hồi (phút) · Response times (minutes)")
    # Acknowledged after 10, 10 and 30 minutes (one never); resolved once, after four hours.
    assert times["acknowledge median"] == pytest.approx(10, abs=0.1)
    assert times["acknowledge p90"] == pytest.approx(26, abs=0.1)
    assert times["resolve median"] == pytest.approx(240, abs=0.1)
    assert times["resolve p90"] == pytest.approx(240, abs=0.1)
    # Over the last day only the three newer incidents count: 10 and 30 minutes to acknowledge, none resolved.
    (day,) = _rows(city, "ioc-incidents", "Thời gian phản hồi (phút) · Response times (minutes)", span="now-24h")
    assert day["acknowledge median"] == pytest.approx(20, abs=0.1) and day["resolve median"] is None
    by_severity = {r["severity"]: r for r in _rows(city, "ioc-incidents",
                                                    "Phản hồi theo mức độ · Response by severity")}
    critical = by_severity["Khẩn cấp · Critical"]
    assert (critical["opened"], critical["acknowledged"], critical["escalated"]) == (1, 0, 1)
    assert by_severity["Nhẹ · Minor"]["resolve_median_min"] == pytest.approx(240, abs=0.1)
    opened: dict[str, int] = {}
    for r in _rows(city, "ioc-incidents", "Sự cố mới · Incidents opened"):
        opened[r["metric"]] = opened.get(r["metric"], 0) + r["opened"]
    assert opened == {"critical": 1, "major": 2, "minor": 1}
    (escalated,) = _rows(city, "ioc-incidents", "Chuyển cấp gần đây · Recent escalations")
    assert escalated["zone_code"] == city.zone and float(escalated["after_min"]) == pytest.approx(6, abs=0.1)


def test_incidents_board_shows_active_alarms_only(city: City) -> None:
    by_source = {r["source"]: r["alarms"] for r in _rows(
        city, "ioc-incidents", "Cảnh báo đang hoạt động theo nguồn · Active alarms by source")}
    assert by_source == {"hazard": 1, "device_silent": 1, "device_flatline": 0, "device_out_of_range": 0,
                         "gateway_offline": 1, "dead_letters": 0, "ingest_stalled": 0}
    alarms = _rows(city, "ioc-incidents", "Cảnh báo đang hoạt động · Active alarms")
    assert [r["source"] for r in alarms] == ["hazard", "gateway_offline", "device_silent"]  # by severity
    assert alarms[0]["dev_eui"] == city.station and alarms[0]["incident_id"] is not None
    not_normal = {(r["zone_code"], r["status"]) for r in _rows(city, "ioc-incidents",
                                                               "Khu vực cần chú ý · Zones not normal")}
    assert not_normal == {(city.zone, "danger"), (city.others[0], "unknown"), (city.others[2], "watch")}


def test_city_map_colours_zones_by_worst_status_and_never_calls_the_unseen_normal(city: City) -> None:
    on_map = {r["zone_code"]: r for r in _rows(city, "ioc-city", "Devices: state, and the latest ${kind:text} reading",
                                               ref="C")}
    table = {r["zone_code"]: r for r in _rows(city, "ioc-city", "Tình trạng khu vực · Zone status")}
    a, b, c, d, *never = city.others
    assert never, "some districts have no status row"
    assert {z: r["status"] for z, r in on_map.items()} == {
        city.zone: "danger", a: "unknown", b: "unknown", c: "watch", d: "normal", **{z: "unknown" for z in never}}
    assert (on_map[b]["worst_hazard"], on_map[never[0]]["worst_hazard"]) == ("no stations", "not evaluated")
    assert on_map[a]["reason"] == "none of its 2 station(s) reported in time"  # unknown beats normal
    assert on_map[city.zone]["worst_hazard"] == "Ngập lụt · Flood" and "danger" in on_map[city.zone]["label"]
    assert all(15.8 < float(r["latitude"]) < 16.3 and 107.8 < float(r["longitude"]) < 108.4 for r in on_map.values())
    assert {z: r["status"] for z, r in table.items()} == {z: r["status"] for z, r in on_map.items()}
    assert next(iter(table)) == city.zone  # the worst first


def test_incident_annotations_on_the_zone_and_device_boards(city: City) -> None:
    title = "annotation: Sự cố · Incidents"
    zone = _rows(city, "ioc-zone", title, ref="Anno")
    assert [r["tags"].split(",")[1] for r in zone] == ["opened", "escalated"]
    assert all(r["text"].startswith("Sự cố #") and "critical" in r["tags"] for r in zone)
    # Acknowledged, in progress and resolved incidents elsewhere: their own zones' boards, not this one.
    other = _rows(city, "ioc-zone", title, ref="Anno", choices={"zone": city.others[0]})
    assert sorted(r["tags"].split(",")[1] for r in other) == ["acknowledged", "acknowledged", "opened", "opened",
                                                              "resolved"]
    device = _rows(city, "ioc-device", title, ref="Anno")
    assert [r["text"] for r in device] == [r["text"] for r in zone]
    with psycopg.connect(city.url, autocommit=True) as conn:
        row = conn.execute("""SELECT d.dev_eui FROM devices d JOIN zones z ON z.id = d.zone_id
                              WHERE z.code = %s ORDER BY d.dev_eui LIMIT 1""", (city.others[3],)).fetchone()
        assert row is not None
        conn.execute("UPDATE alarms SET device_eui = %s WHERE source = 'hazard'", (row[0],))
        try:
            # A device elsewhere whose alarm joined the incident sees it too.
            named = _rows(city, "ioc-device", title, ref="Anno", choices={"device": row[0]})
        finally:
            conn.execute("UPDATE alarms SET device_eui = %s WHERE source = 'hazard'", (city.station,))
        alone = _rows(city, "ioc-device", title, ref="Anno", choices={"device": row[0]})
    assert [r["text"] for r in named] == [r["text"] for r in zone] and alone == []


def test_watchdog_rules_fire_on_a_stalled_evaluator_and_stuck_notifications(city: City) -> None:
    (evaluator,) = _rows(city, None, "Operations evaluator stalled")
    assert evaluator["behind_s"] == pytest.approx(600, abs=120)  # rows evaluated ten minutes ago: above 300
    stuck = {r["channel"]: r["stuck"] for r in _rows(city, None, "Notifications not delivered")}
    assert stuck == {"email": 1}
    with psycopg.connect(city.url, autocommit=True) as conn:
        conn.execute("UPDATE zone_hazard_status SET evaluated_at = now()")
        try:
            (fresh,) = _rows(city, None, "Operations evaluator stalled")
        finally:
            conn.execute("UPDATE zone_hazard_status SET evaluated_at = now() - interval '10 minutes'")
    assert fresh["behind_s"] < 60


def test_incidents_board_narrows_to_chosen_districts_and_keeps_city_wide_ones(city: City) -> None:
    mine = {"district": city.zone}
    listed = _rows(city, "ioc-incidents", "Sự cố đang mở · Open incidents", choices=mine)
    assert [r["zone_code"] for r in listed] == [city.zone]
    alarms = {r["source"]: r["alarms"] for r in _rows(
        city, "ioc-incidents", "Cảnh báo đang hoạt động theo nguồn · Active alarms by source", choices=mine)}
    # The gateway alarm has no zone: everyone's. The silent device's alarm is in the chosen district.
    assert (alarms["hazard"], alarms["device_silent"], alarms["gateway_offline"]) == (1, 1, 1)
    other = {"district": city.others[2]}
    assert [r["zone_code"] for r in _rows(city, "ioc-incidents", "Sự cố đang mở · Open incidents",
                                          choices=other)] == [city.others[2]]
    other_alarms = {r["source"]: r["alarms"] for r in _rows(
        city, "ioc-incidents", "Cảnh báo đang hoạt động theo nguồn · Active alarms by source", choices=other)}
    assert (other_alarms["hazard"], other_alarms["device_silent"], other_alarms["gateway_offline"]) == (0, 0, 1)
    (times,) = _rows(city, "ioc-incidents", "Thời gian phản hồi (phút) · Response times (minutes)", choices=other)
    assert times["acknowledge median"] == pytest.approx(30, abs=0.1) and times["resolve median"] is None


def test_zone_board_shows_each_hazard_status_and_unknown_where_not_evaluated(city: City) -> None:
    title = "Tình trạng · Hazard status"
    here = {r["hazard"]: r["status"] for r in _rows(city, "ioc-zone", title)}
    assert here == {"Chất lượng không khí · Air quality": "normal", "Ngập lụt · Flood": "danger",
                    "Mưa lớn · Heavy rain": "unknown"}
    never = _rows(city, "ioc-zone", title, choices={"zone": city.others[4]})
    assert {r["status"] for r in never} == {"unknown"} and {r["reason"] for r in never} == {"not evaluated"}
