"""Grafana board benchmark: every panel's and alert rule's SQL on a month of data for a city's fleet.

The issue's target: every board's heaviest query answers in under 200 ms on this two-core machine with 30
days of data for 5,000 devices. Grafana cannot run here, so each query is expanded exactly as Grafana would
send it (dashboards/macros.py: $__timeFilter, $__timeGroupAlias, $__interval, variables) and run over
psycopg against a local PostgreSQL (durable settings, as the other benchmarks), timed from send to last row.

    python bench/dashboards_bench.py                       # 5,000 devices, 30 days, 20 runs per query
    python bench/dashboards_bench.py --devices 200 --days 3 --runs 3     # a quick run (seconds)
    python bench/dashboards_bench.py --mode timescaledb    # one storage mode (default: both if installed)
    python bench/dashboards_bench.py --database-url URL --skip-fill      # a database left by --keep

The fill is bench/api_bench.py's (devices over the districts, gateways, uplinks, measurements; hourly
uplinks for older days), with the last 48 hours at each kind's real interval, because that
is the raw data short ranges read. On top: LoRaWAN status events every six hours and joins, ingest_stats
from two workers every 10 s for the whole month, and dead letters; then the four hourly rollups are brought
up to date as the storage mode does it (bench/storage_mode.py). Each query runs at its board's default
range and over the full 30 days; the variables take the values an operator
would pick (a district, water level stations, one station).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

import numpy as np
import psycopg
from api_bench import TABLES, fill, table_sizes  # bench/ is the script's folder, first on sys.path
from storage_mode import (
    MODES,
    Mode,
    add_mode_argument,
    bring_rollups_up_to_date,
    cpu_parts,
    install_schema,
    machine,
    mode_database,
    modes_for,
    pause_jobs,
    side_by_side,
)

from dashboards.boards import all_boards
from dashboards.exercise import QueryCase, board_cases, parse_relative, rule_cases, run_case, sample_variables
from dashboards.macros import TimeRange, Variable
from gateways.database import Connection
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


# A measured query: (board title, panel, ref id, range); p95 by storage mode.
Key = tuple[str, str, str, str]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=5000, help="registered devices (default 5000)")
    parser.add_argument("--days", type=int, default=30, help="days of data up to now (default 30)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per query (default 20)")
    add_mode_argument(parser)
    parser.add_argument("--database-url", help="fill and measure this (empty) database instead of starting one; "
                        "its server decides the mode unless --mode names one")
    parser.add_argument("--skip-fill", action="store_true", help="with --database-url: measure what is there")
    parser.add_argument("--keep", action="store_true", help="leave the local PostgreSQL running, for EXPLAIN")
    args = parser.parse_args()
    if args.devices < 1 or args.days < 3 or args.runs < 1:
        parser.error("--devices and --runs must be positive, --days at least 3")
    if args.skip_fill and not args.database_url:
        parser.error("--skip-fill needs --database-url")
    signal.signal(signal.SIGTERM, _on_sigterm)
    # One database per mode, filled and measured one after the other so they never share the cores.
    modes = modes_for(args.mode, args.database_url)
    root = Path(tempfile.mkdtemp(prefix="ioc-dash-bench-"))
    measured: dict[Mode, dict[Key, float]] = {}
    try:
        for mode in modes:
            with mode_database(root, mode, args.database_url, keep=args.keep) as url:
                installed, p95s = _bench_mode(url, mode, args)
                measured[installed] = p95s
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    shown = [m for m in MODES if m in measured]
    keys = list(dict.fromkeys(k for m in shown for k in measured[m]))
    print(f"\nevery query, p95 side by side ({args.devices} devices, {args.days} days; target < {TARGET_MS:.0f} ms "
          "for each board's heaviest)")
    side_by_side([(f"{k[0][:10]:<11}{k[1][:36]:<37}{k[2]:<3}{k[3]}", {m: measured[m][k] for m in shown
                                                                          if k in measured[m]}, None)
                  for k in keys], shown, label="board / panel / ref / range")
    print("\nheaviest query per board and range (p95)")
    rows: list[tuple[str, dict[Mode, float], float | None]] = []
    for board, span in dict.fromkeys((k[0], k[3]) for k in keys):
        of = [k for k in keys if k[0] == board and k[3] == span]
        worst = {m: max((measured[m][k], k[1]) for k in of if k in measured[m]) for m in shown}
        panels = " / ".join(dict.fromkeys(w[1][:28] for w in worst.values()))
        rows.append((f"{board[:12]:<13}{span:<9}{panels}", {m: w[0] for m, w in worst.items()}, TARGET_MS))
    side_by_side(rows, shown, label="board / range / heaviest panel")


def _bench_mode(url: str, mode: Mode | None, args: argparse.Namespace) -> tuple[Mode, dict[Key, float]]:
    """Fill (unless --skip-fill) and measure one database: each query's p95 per board and range."""
    with psycopg.connect(url) as conn:
        installed = install_schema(conn, mode)  # leaves the connection in autocommit
        print(f"\n=== {installed} mode ===\nmachine: {machine(conn)}")
        seed_zones(conn, load_default_zones())
        if not args.skip_fill:
            existing = conn.execute("SELECT count(*) FROM devices").fetchone()
            if existing and existing[0]:
                raise SystemExit(f"the database holds {existing[0]} devices; use --skip-fill to measure it")
            now = datetime.now(UTC)
            print(f"\nfilling: {args.devices} devices, {args.days} days up to {now:%Y-%m-%d %H:%M:%S}Z "
                  "(last 48 h at each kind's interval)", flush=True)
            started = time.monotonic()
            pause_jobs(conn)
            fill(url, args.devices, args.days, now, dense_hours=48)
            step = time.monotonic()
            fill_extras(conn, args.days, now)
            print(f"  status events, joins, ingest_stats, dead letters: {time.monotonic() - step:.1f} s")
            bring_rollups_up_to_date(url, parts=cpu_parts())
            step = time.monotonic()
            conn.execute("VACUUM ANALYZE")
            print(f"  VACUUM ANALYZE: {time.monotonic() - step:.1f} s")
            print(f"fill took {time.monotonic() - started:.1f} s")
        table_sizes(conn, (*TABLES, "rollup_gateway_hourly", "rollup_ingest_hourly"))
        extra = conn.execute("SELECT (SELECT count(*) FROM device_events), (SELECT count(*) FROM ingest_stats), "
                             "(SELECT count(*) FROM dead_letters)").fetchone()
        assert extra is not None
        print(f"  device_events {extra[0]:,}, ingest_stats {extra[1]:,}, dead_letters {extra[2]:,}")

    p95s: dict[Key, float] = {}
    # Measured on a new connection, as Grafana's are: it gets the database's settings (JIT off, 0006).
    with psycopg.connect(url, autocommit=True) as conn:
        jit = conn.execute("SELECT current_setting('jit')").fetchone()
        print(f"\nmeasuring connection: jit = {jit[0] if jit else '?'}")
        choices = _choices(conn)
        print(f"\nvariables: {choices}; {args.runs} timed runs per query after one warm-up; "
              "a repeated panel's time is the sum over its clones")
        now = datetime.now(UTC)
        header = f"  {'panel':<44}{'ref':<4}{'range':<9}{'rows':>8}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}"
        for board in all_boards():
            print(f"\n{board.title} board ({board.uid})\n{header}")
            for span in dict.fromkeys([board.default_from, f"now-{args.days}d"]):
                time_range = parse_relative(span, now)
                variables = sample_variables(conn, board, time_range, choices)
                for case in board_cases(board, time_from=span):
                    p50, p95, top, rows = _measure(conn, case, time_range, variables, args.runs)
                    print(f"  {case.panel[:43]:<44}{case.ref_id:<4}{span:<9}{rows:>8}{p50:>9.1f}{p95:>9.1f}"
                          f"{top:>9.1f}", flush=True)
                    p95s[(board.title, case.panel, case.ref_id, span)] = p95
        print(f"\nAlert rules\n{header}")
        for case in rule_cases():
            time_range = parse_relative(case.time_from, now)
            p50, p95, top, rows = _measure(conn, case, time_range, [], args.runs)
            print(f"  {case.panel[:43]:<44}{case.ref_id:<4}{case.time_from:<9}{rows:>8}{p50:>9.1f}{p95:>9.1f}"
                  f"{top:>9.1f}", flush=True)
            p95s[("Alert rules", case.panel, case.ref_id, "rule")] = p95
    return installed, p95s


if __name__ == "__main__":
    main()
