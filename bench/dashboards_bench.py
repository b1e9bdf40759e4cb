"""Grafana board benchmark: every panel's and alert rule's SQL on a month of data for a city's fleet.

The issue's target: every board's heaviest query answers in under 200 ms on this two-core machine with 30
days of data for 5,000 devices. Grafana cannot run here, so each query is expanded exactly as Grafana would
send it (dashboards/macros.py: $__timeFilter, $__timeGroupAlias, $__interval, variables) and run over
psycopg against a local PostgreSQL (durable settings, as the other benchmarks), timed from send to last row.

    python bench/dashboards_bench.py                       # 5,000 devices, 30 days, 20 runs per query
    python bench/dashboards_bench.py --devices 500 --days 3 --runs 5     # a quick run
    python bench/dashboards_bench.py --database-url URL --skip-fill      # a database left by --keep

The fill is bench/api_bench.py's (devices over the districts, gateways, uplinks, measurements and hourly
rollups; hourly uplinks for older days), with the last 48 hours at each kind's real interval, because that
is the raw data short ranges read. On top: LoRaWAN status events every six hours and joins, ingest_stats
from two workers every 10 s for the whole month, and dead letters. Each query runs at its board's default
range and over the full 30 days; the variables take the values an operator
would pick (a district, water level stations, one station).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

import numpy as np
import psycopg
from api_bench import (  # bench/ is the script's folder, first on sys.path
    close_database,
    fill,
    machine,
    open_database,
    table_sizes,
)

from dashboards.boards import all_boards
from dashboards.exercise import QueryCase, board_cases, parse_relative, rule_cases, run_case, sample_variables
from dashboards.macros import TimeRange, Variable
from gateways.database import Connection
from gateways.local_postgres import LocalPostgres
from gateways.migrations import migrate
from ingest.registry import seed_zones
from ioc_core.zones import load_default_zones

TARGET_MS = 200.0


def fill_extras(conn: Connection, days: int, now: datetime) -> None:
    """What api_bench leaves out and the Device and Pipeline boards read: events, worker stats, dead letters."""
    start = now - timedelta(days=days)
    conn.execute("SET work_mem = '256MB'")
    conn.execute("""INSERT INTO device_events (time, received_at, device_id, event_type, event_key, battery_level,
                                               margin, external_power_source)
        SELECT t, t, d.id, 'status', md5(d.id || ':' || t)::uuid,
               greatest(0, 100 - extract(epoch FROM t - %(start)s) / 86400 * 0.3 - (d.id %% 50)),
               (5 + d.id %% 20)::int2, false
        FROM devices d CROSS JOIN generate_series(%(start)s::timestamptz, %(now)s, interval '6 hours') t
        ORDER BY t""", {"start": start + timedelta(minutes=7), "now": now})
    conn.execute("""INSERT INTO device_events (time, received_at, device_id, event_type, event_key, details)
        SELECT %(start)s::timestamptz + interval '1 second' * (d.id %% 3600), %(start)s, d.id, 'join',
               md5('join' || d.id)::uuid, '{"devAddr": "26000000"}'
        FROM devices d""", {"start": start})
    conn.execute("""INSERT INTO ingest_stats (time, worker, interval_s, received, uplinks, duplicates, measurements,
                                              device_events, dead_letters, batches, batch_size_avg, batch_ms_avg,
                                              lag_ms_p50, lag_ms_p99, latency_ms_p50, latency_ms_p99, retries)
        SELECT t, w, 10, 60 + (extract(epoch FROM t)::int8 %% 17), 58, 1, 116, 1,
               (extract(epoch FROM t)::int8 %% 97 = 0)::int,
               2, 29.5, 14.2, 420, 1300, 9, 31, 0
        FROM generate_series(%(start)s::timestamptz, %(now)s, interval '10 seconds') t
        CROSS JOIN unnest(ARRAY['ingest-a', 'ingest-b']) w
        ORDER BY t""", {"start": start, "now": now})
    conn.execute("""INSERT INTO dead_letters (fingerprint, received_at, topic, payload, stage, reason, dev_eui)
        SELECT md5('dl' || i)::uuid, %(start)s::timestamptz + (%(now)s::timestamptz - %(start)s) * (i / 20000.0),
               'application/x/device/' || d.dev_eui || '/event/up', '\\x00'::bytea,
               (ARRAY['parse', 'device', 'decode', 'normalise'])[1 + i %% 4],
               (ARRAY['invalid JSON: expecting value', 'unknown device: not enrolled', 'payload too short: 3 bytes',
                      'value out of range: water_level'])[1 + i %% 4], d.dev_eui
        FROM generate_series(1, 20000) i JOIN devices d ON d.id = 1 + i %% 5000""", {"start": start, "now": now})
    # The hourly rollups the ingest (ingest/writer.py, ingest/stats.py) keeps on plain PostgreSQL.
    conn.execute("""INSERT INTO rollup_gateway_hourly
        SELECT date_trunc('hour', time, 'UTC'), gateway_id, zone_id, count(*), sum(rssi), count(rssi), min(rssi),
               sum(snr::float8), count(snr), min(snr)
        FROM uplinks GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""")
    conn.execute("""INSERT INTO rollup_ingest_hourly
        SELECT date_trunc('hour', time, 'UTC'), worker, sum(interval_s::float8), sum(received), sum(uplinks),
               sum(duplicates), sum(measurements), sum(device_events), sum(dead_letters), sum(batches),
               sum(batch_size_avg::float8 * batches), sum(batch_ms_avg::float8 * batches), max(lag_ms_p50),
               max(lag_ms_p99), sum(retries)
        FROM ingest_stats GROUP BY 1, 2 ORDER BY 1, 2""")
    conn.execute("UPDATE gateways SET chirpstack_state = 'online', chirpstack_last_seen_at = last_seen_at, "
                 "chirpstack_synced_at = now()")
    conn.execute("UPDATE gateways SET chirpstack_state = 'offline' WHERE id = (SELECT min(id) FROM gateways)")


def _choices(conn: Connection) -> dict[str, str]:
    """A district with water level stations, and its busiest station, as an operator would look at them."""
    row = conn.execute("""SELECT z.code, d.dev_eui FROM devices d JOIN zones z ON z.id = d.zone_id
                          WHERE d.kind = 'water_level' AND z.level = 'district'
                          ORDER BY z.code <> 'hai-chau', d.id LIMIT 1""").fetchone()
    if row is None:
        raise SystemExit("no water level station in any district")
    return {"zone": str(row[0]), "kind": "water_level", "device": str(row[1])}


def _measure(conn: Connection, case: QueryCase, time_range: TimeRange, variables: list[Variable],
             runs: int) -> tuple[float, float, float, int]:
    """p50, p95, max (ms) over ``runs`` after one warm-up, and the rows of the last run (summed over repeats)."""
    run_case(conn, case, time_range, variables)
    times = []
    rows = 0
    for _ in range(runs):
        results = run_case(conn, case, time_range, variables)
        times.append(sum(r.ms for r in results))
        rows = sum(len(r.rows) for r in results)
    arr = np.array(times)
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 95)), float(arr.max()), rows


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=5000, help="registered devices (default 5000)")
    parser.add_argument("--days", type=int, default=30, help="days of data up to now (default 30)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per query (default 20)")
    parser.add_argument("--database-url", help="fill and measure this (empty) database instead of starting one")
    parser.add_argument("--skip-fill", action="store_true", help="with --database-url: measure what is there")
    parser.add_argument("--keep", action="store_true", help="leave the local PostgreSQL running, for EXPLAIN")
    args = parser.parse_args()
    if args.devices < 1 or args.days < 3 or args.runs < 1:
        parser.error("--devices and --runs must be positive, --days at least 3")
    if args.skip_fill and not args.database_url:
        parser.error("--skip-fill needs --database-url")
    signal.signal(signal.SIGTERM, _on_sigterm)
    root = Path(tempfile.mkdtemp(prefix="ioc-dash-bench-"))
    pg: LocalPostgres | None = None
    keep = False
    try:
        pg, url = open_database(root, args.database_url)
        with psycopg.connect(url) as conn:
            migrate(conn, "off")  # leaves the connection in autocommit
            print(f"machine: {machine(conn)}")
            seed_zones(conn, load_default_zones())
            if not args.skip_fill:
                existing = conn.execute("SELECT count(*) FROM devices").fetchone()
                if existing and existing[0]:
                    raise SystemExit(f"the database holds {existing[0]} devices; use --skip-fill to measure it")
                now = datetime.now(UTC)
                print(f"\nfilling: {args.devices} devices, {args.days} days up to {now:%Y-%m-%d %H:%M:%S}Z "
                      "(last 48 h at each kind's interval)", flush=True)
                started = time.monotonic()
                fill(url, args.devices, args.days, now, dense_hours=48)
                step = time.monotonic()
                fill_extras(conn, args.days, now)
                print(f"  status events, joins, ingest_stats, dead letters: {time.monotonic() - step:.1f} s")
                step = time.monotonic()
                conn.execute("VACUUM ANALYZE")
                print(f"  VACUUM ANALYZE: {time.monotonic() - step:.1f} s")
                print(f"fill took {time.monotonic() - started:.1f} s")
            table_sizes(conn)
            extra = conn.execute("SELECT (SELECT count(*) FROM device_events), (SELECT count(*) FROM ingest_stats), "
                                 "(SELECT count(*) FROM dead_letters)").fetchone()
            assert extra is not None
            print(f"  device_events {extra[0]:,}, ingest_stats {extra[1]:,}, dead_letters {extra[2]:,}")

        # Measured on a new connection, as Grafana's are: it gets the database's settings (JIT off, 0006).
        with psycopg.connect(url, autocommit=True) as conn:
            jit = conn.execute("SELECT current_setting('jit')").fetchone()
            print(f"\nmeasuring connection: jit = {jit[0] if jit else '?'}")
            choices = _choices(conn)
            print(f"\nvariables: {choices}; {args.runs} timed runs per query after one warm-up; "
                  "a repeated panel's time is the sum over its clones")
            now = datetime.now(UTC)
            heaviest: list[tuple[str, str, float]] = []
            header = f"  {'panel':<44}{'ref':<4}{'range':<9}{'rows':>8}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}"
            for board in all_boards():
                ranges = [board.default_from, f"now-{args.days}d"]
                print(f"\n{board.title} board ({board.uid})\n{header}")
                worst = ("", "", 0.0)
                for span in dict.fromkeys(ranges):
                    time_range = parse_relative(span, now)
                    variables = sample_variables(conn, board, time_range, choices)
                    for case in board_cases(board, time_from=span):
                        p50, p95, top, rows = _measure(conn, case, time_range, variables, args.runs)
                        print(f"  {case.panel[:43]:<44}{case.ref_id:<4}{span:<9}{rows:>8}{p50:>9.1f}{p95:>9.1f}"
                              f"{top:>9.1f}", flush=True)
                        if p95 > worst[2]:
                            worst = (case.panel, span, p95)
                heaviest.append((board.title, f"{worst[0]} ({worst[1]})", worst[2]))
            print(f"\nAlert rules\n{header}")
            worst = ("", "", 0.0)
            for case in rule_cases():
                time_range = parse_relative(case.time_from, now)
                p50, p95, top, rows = _measure(conn, case, time_range, [], args.runs)
                print(f"  {case.panel[:43]:<44}{case.ref_id:<4}{case.time_from:<9}{rows:>8}{p50:>9.1f}{p95:>9.1f}"
                      f"{top:>9.1f}", flush=True)
                if p95 > worst[2]:
                    worst = (case.panel, case.time_from, p95)
            heaviest.append(("Alert rules", f"{worst[0]} ({worst[1]})", worst[2]))

        print(f"\nheaviest query per board (p95; target < {TARGET_MS:.0f} ms)")
        for title, panel, p95 in heaviest:
            verdict = "ok" if p95 < TARGET_MS else "OVER TARGET"
            print(f"  {title:<14}{panel[:60]:<62}{p95:>8.1f} ms  {verdict}")
        keep = args.keep
    finally:
        close_database(pg, root, keep=keep)


if __name__ == "__main__":
    sys.exit(main())
