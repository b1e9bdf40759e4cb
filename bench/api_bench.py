"""API read-path benchmark: zone summaries and device series over a month of data for a city's fleet.

The issue's target: with 5,000 devices and 30 days of hourly data, the zone summary and a 30-day device
series answer in under 100 ms p95 on this two-core machine. Everything runs here: a PostgreSQL server
started as a local process (durable settings, as in bench/ingest_bench.py; --database-url uses another),
the real `ioc api` in a subprocess, and keep-alive HTTP clients in this process, so client, API and
database share the cores. Other work on the machine shows in the tails: the load average is printed.

    python bench/api_bench.py                                  # 5,000 devices, 30 days, 200 requests each
    python bench/api_bench.py --devices 200 --days 2 --requests 20   # a quick run (seconds)
    python bench/api_bench.py --mode timescaledb               # one storage mode (default: both if installed)
    python bench/api_bench.py --keep                           # leave the filled database running for EXPLAIN

The fill is set-based SQL, one session per core, and deterministic for a given end time (hashes, no
random()): devices spread over the districts at points inside their polygons, with the fleet mix of
device_simulators.catalogue (models, codecs, fPorts); one uplink per device per hour with a few lost frames
(f_cnt gaps) and decode errors, two measurements per decoded uplink; then the hourly rollups are brought up
to date as the storage mode does it (bench/storage_mode.py: the writer's aggregates on plain PostgreSQL,
every policy job run once on TimescaleDB). In the last two hours most devices report at their
kind's interval, a few only hourly (late or silent); 2 % went quiet days ago and 1 % never sent anything,
so the health counts and the "last hour" figures have something to count. Then VACUUM ANALYZE, as
autovacuum would have done over a month.

Latency is wall-clock time per request (send to last byte) with warm-up requests left out; requests/s is
one client's sequential rate. A second pass runs the required endpoints from several clients at once.

One script of ~600 lines so it runs alone from a checkout: filling a month of data, starting the API and
measuring each route are one story, read top to bottom.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

import numpy as np
import psycopg
from storage_mode import (  # bench/ is the script's folder, first on sys.path
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
    relation_size,
    run_in_parts,
    side_by_side,
)

from device_simulators.catalogue import MODELS
from gateways.database import Connection
from gateways.local_postgres import free_port
from ingest.registry import seed_zones
from ioc_api.queries.devices import refresh_commissioning
from ioc_api.queries.users import create_user
from ioc_core.kinds import KINDS
from ioc_core.zones import load_default_zones

TARGET_MS = 100.0
EUI_BASE = 0x70B3D5E75E000000

def rnd(key: str, salt: int | str) -> str:
    """SQL for a uniform [0, 1) number from a bigint key and a salt: deterministic, cheap for millions of rows."""
    return f"((hashint8extended(({key})::int8, {salt}) & 16777215)::float8 / 16777216)"


# The two metrics each kind's devices send, as SQL over: th (hours since the epoch), hod (local hour of day),
# n (noise of this reading) and dv (a constant of the device). All stay inside the vocabulary's ranges.
_DAY = "sin(2 * pi() * (hod - 9) / 24)"
METRICS: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "water_level": (("water_level", "1.0 + 2 * dv + 0.6 * sin(2 * pi() * th / 12.42) + 0.05 * (n - 0.5)"),
                    ("battery_voltage", "3.3 + 0.35 * dv + 0.02 * (n - 0.5)")),
    "flood_depth": (("flood_depth", "greatest(0, 0.5 * sin(2 * pi() * th / 97 + 6 * dv) - 0.35 + 0.01 * n)"),
                    ("battery_voltage", "3.3 + 0.35 * dv + 0.02 * (n - 0.5)")),
    "rain_gauge": (("rainfall", "CASE WHEN n > 0.85 THEN round(((n - 0.85) * 40)::numeric, 1) ELSE 0 END"),
                   ("battery_voltage", "3.3 + 0.35 * dv + 0.02 * (n - 0.5)")),
    "air_quality": (("pm2_5", f"greatest(1, 20 + 30 * dv + 12 * {_DAY} + 8 * (n - 0.5))"),
                    ("pm10", f"greatest(2, 35 + 50 * dv + 20 * {_DAY} + 15 * (n - 0.5))")),
    "water_quality": (("ph", "6.8 + 0.8 * dv + 0.2 * (n - 0.5)"),
                      ("dissolved_oxygen", "5 + 2 * dv + 1.2 * sin(2 * pi() * (hod - 14) / 24) + 0.3 * (n - 0.5)")),
    "parking": (("occupied", "(n < 0.35 + 0.45 * greatest(0, sin(2 * pi() * (hod - 6) / 24)))::int"),
                ("battery_voltage", "3.3 + 0.35 * dv + 0.02 * (n - 0.5)")),
    "waste_bin": (("fill_level", "100 * mod((th + 200 * dv)::numeric, (48 + 48 * dv)::numeric) / (48 + 48 * dv)"),
                  ("temperature", f"29 + 6 * {_DAY} + 2 * dv + 0.6 * (n - 0.5)")),
    "street_light": (("lamp_on", "(hod >= 18 OR hod < 6)::int"),
                     ("power", "CASE WHEN hod >= 18 OR hod < 6 THEN 60 + 40 * dv + 3 * (n - 0.5) ELSE 0.4 END")),
    "temperature_humidity": (("temperature", f"27 + 5 * {_DAY} + 2 * dv + 0.6 * (n - 0.5)"),
                             ("humidity", f"least(100, 75 - 12 * {_DAY} + 6 * dv + 3 * (n - 0.5))")),
}


def fill(url: str, devices: int, days: int, now: datetime, *, dense_hours: int = 2) -> None:
    """Devices, gateways, uplinks and measurements; ``now`` is where the data ends.

    Raw rows only, as the ingest writes them: storage_mode.bring_rollups_up_to_date brings the rollups
    up to date afterwards, the way the database's mode does.

    Uplinks are hourly until ``dense_hours`` before ``now``, then at each device's own interval.

    The big statements run in one session per core, each for its share of the devices (PostgreSQL plans no
    parallel workers for INSERT ... SELECT). Every session writes in time order, as the ingest does, so rows
    and index entries land where a month of ingest would have put them.
    """
    step = time.monotonic()

    def done(what: str) -> None:
        nonlocal step
        print(f"  {what}: {time.monotonic() - step:.1f} s", flush=True)
        step = time.monotonic()

    with psycopg.connect(url, autocommit=True) as conn:
        _setup(conn, devices, days, now)
    done(f"devices ({devices}), gateways, placement")
    try:
        start = now - timedelta(days=days)
        hourly = days * 24 - dense_hours
        _parallel(url, f"""INSERT INTO uplinks
            SELECT f.t, f.t + interval '1 millisecond' * (150 + 500 * {rnd("f.key", 31)}), f.id,
                   md5(f.key::text)::uuid, f.zone_id, lpad(to_hex(x'26000000'::int8 + f.id), 8, '0'), f.fcnt0 + f.cnt,
                   f.f_port, f.dr, false, true, 923200000 + 200000 * (f.cnt %% 8), 12 - f.dr,
                   (f.rssi - 6 * {rnd("f.key", 32)})::int2, round((f.snr + 3 * {rnd("f.key", 33)})::numeric, 1)::real,
                   1 + floor(2.2 * {rnd("f.key", 34)})::int2, f.gateway_id,
                   substr(decode(md5(f.key::text || 'p'), 'hex'), 1, 7 + f.f_port %% 8), f.codec_id,
                   CASE WHEN {rnd("f.key", 35)} < 0.002 THEN 'error' WHEN {rnd("f.key", 35)} < 0.005 THEN 'warning'
                        ELSE 'ok' END
            FROM (SELECT d.*, s.t, s.cnt, d.id::int8 * 10000000 + s.cnt AS key
                  FROM api_bench_dev d
                  CROSS JOIN LATERAL (
                      -- hourly up to dense_hours ago, then every device at its own step
                      SELECT %(start)s::timestamptz + interval '1 second' * d.offset_s + interval '1 hour' * h AS t,
                             h AS cnt
                      FROM generate_series(0, {hourly - 1}) h
                      UNION ALL
                      SELECT %(recent)s::timestamptz + interval '1 second' * (d.offset_s %% d.step)
                             + interval '1 second' * d.step * k, {hourly} + k
                      FROM generate_series(0, %(dense_s)s / d.step) k) s
                  WHERE s.t < d.stop_at AND s.t < %(now)s AND d.id %% %(parts)s = %(part)s) f
            WHERE {rnd("f.key", 30)} >= 0.015  -- lost frames: gaps in f_cnt
            ORDER BY f.t""", {"start": start, "recent": now - timedelta(hours=dense_hours), "now": now,
                                  "dense_s": dense_hours * 3600})
        done("uplinks")

        cases = "\n".join(f"WHEN '{kind}:{slot}' THEN {expr}"
                          for kind, pairs in METRICS.items() for slot, (_, expr) in enumerate(pairs))
        _parallel(url, f"""INSERT INTO measurements
            SELECT u.time, u.device_id, u.zone_id, p.metric_id, (CASE p.kind || ':' || p.slot {cases} END)::float8, 0
            FROM uplinks u JOIN api_bench_dev d ON d.id = u.device_id JOIN api_bench_pair p ON p.kind = d.kind
            CROSS JOIN LATERAL (SELECT extract(epoch FROM u.time) / 3600 AS th,
                                       mod((extract(epoch FROM u.time) / 3600 + 7)::numeric, 24)::float8 AS hod,
                                       {rnd("u.device_id::int8 * 10000000 + u.f_cnt", "40 + p.slot")} AS n,
                                       {rnd("u.device_id", "41 + p.slot")} AS dv) v
            WHERE u.decode_status <> 'error' AND u.device_id %% %(parts)s = %(part)s
            ORDER BY u.time, u.device_id, p.slot""", {})
        done("measurements")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE gateways g SET last_seen_at = (SELECT max(time) FROM uplinks u "
                         "WHERE u.gateway_id = g.id)")
            refresh_commissioning(conn)  # first uplink, decoding verified, commissioned: as the API's background
            done("gateways' last_seen_at, commissioning steps")
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS api_bench_kind, api_bench_pair, api_bench_zone, api_bench_spot, "
                         "api_bench_dev")


def _parallel(url: str, statement: str, params: dict[str, object]) -> None:
    """Run ``statement`` once per core, each session with ``part`` of ``parts`` set."""
    run_in_parts(url, statement, params, cpu_parts())


def _setup(conn: Connection, devices: int, days: int, now: datetime) -> None:
    """Gateways and devices, and the per-device plan the big statements read (unlogged api_bench_* tables)."""
    conn.execute("SET work_mem = '256MB'")
    conn.execute("DROP TABLE IF EXISTS api_bench_kind, api_bench_pair, api_bench_zone, api_bench_spot, api_bench_dev")
    # The fleet mix of the simulators, and the two metrics of every kind.
    conn.execute("CREATE UNLOGGED TABLE api_bench_kind (kind text PRIMARY KEY, model text, codec_id text, "
                 "f_port int2, interval_s int, lo float8, hi float8)")
    conn.execute("CREATE UNLOGGED TABLE api_bench_pair (kind text, slot int, metric_id int2, metric text)")
    total = sum(m.share for m in MODELS)
    lo = 0.0
    for m in MODELS:
        hi = lo + m.share / total if m is not MODELS[-1] else 2.0  # the last range takes the rounding
        conn.execute("INSERT INTO api_bench_kind VALUES (%s, %s, %s, %s, %s, %s, %s)",
                     (m.kind, m.id, m.codec_id, m.fport, KINDS[m.kind].interval_s, lo, hi))
        lo = hi
        for slot, (metric, _) in enumerate(METRICS[m.kind]):
            conn.execute("INSERT INTO api_bench_pair SELECT %s, %s, id, name FROM metrics WHERE name = %s",
                         (m.kind, slot, metric))

    # Districts in code order; two gateways each near the middle of the district's first ring.
    conn.execute("""CREATE UNLOGGED TABLE api_bench_zone AS
                    SELECT (row_number() OVER (ORDER BY z.code) - 1)::int AS idx, z.id AS zone_id, z.code
                    FROM zones z WHERE z.valid_to IS NULL AND z.level = 'district'""")
    zones = conn.execute("SELECT count(*) FROM api_bench_zone").fetchone()
    nz = int(zones[0]) if zones else 0
    if nz == 0:
        raise SystemExit("no districts in the zones table")
    conn.execute("""INSERT INTO gateways (gateway_eui, name, latitude, longitude, altitude, first_seen_at)
                    SELECT lpad(to_hex(x'0016c001ff100000'::int8 + bz.idx * 2 + g), 16, '0'),
                           'gw-' || bz.code || '-' || g, (center(box(r.ring)))[1] + 0.003 * g,
                           (center(box(r.ring)))[0] - 0.003 * g, 25, %(start)s
                    FROM api_bench_zone bz
                    JOIN LATERAL (SELECT ring FROM zone_rings WHERE zone_id = bz.zone_id LIMIT 1) r ON true
                    CROSS JOIN generate_series(0, 1) g ORDER BY bz.idx, g""",
                 {"start": now - timedelta(days=days + 1)})

    # Spots inside each district: sample its rings' bounding boxes, keep points the ring contains and no
    # district with a lower id also contains (the registry's rule for overlapping boundaries).
    per_zone = -(-devices // nz)
    conn.execute(f"""CREATE UNLOGGED TABLE api_bench_spot AS
        SELECT c.zone_id, row_number() OVER (PARTITION BY c.zone_id ORDER BY c.k, c.lon)::int AS rn, c.lon, c.lat
        FROM (SELECT bz.zone_id, k, r.ring,
                     least((b[0])[0], (b[1])[0]) + abs((b[0])[0] - (b[1])[0]) * {rnd("k * 64 + bz.idx", 11)} AS lon,
                     least((b[0])[1], (b[1])[1]) + abs((b[0])[1] - (b[1])[1]) * {rnd("k * 64 + bz.idx", 12)} AS lat
              FROM api_bench_zone bz JOIN zone_rings r ON r.zone_id = bz.zone_id
              CROSS JOIN LATERAL (SELECT box(r.ring) AS b) bb
              CROSS JOIN generate_series(1, %(candidates)s) k) c
        WHERE c.ring @> point(c.lon, c.lat)
          AND NOT EXISTS (SELECT 1 FROM zone_rings o JOIN api_bench_zone oz ON oz.zone_id = o.zone_id
                          WHERE o.zone_id < c.zone_id AND o.ring @> point(c.lon, c.lat))""",
                 {"candidates": per_zone * 10 + 100})
    short = conn.execute("SELECT bz.code FROM api_bench_zone bz LEFT JOIN api_bench_spot s ON s.zone_id = bz.zone_id "
                         "GROUP BY bz.code HAVING count(s.*) < %s", (per_zone,)).fetchall()
    if short:
        raise SystemExit(f"could not place {per_zone} devices inside {', '.join(r[0] for r in short)}")

    start = now - timedelta(days=days)
    conn.execute(f"""INSERT INTO devices (dev_eui, name, kind, model, codec_id, latitude, longitude, zone_id,
                                          tags, created_at, updated_at, registered_at)
        SELECT lpad(to_hex(%(eui)s::int8 + i), 16, '0'), k.kind || '-' || lpad(i::text, 5, '0'), k.kind, k.model,
               k.codec_id, s.lat, s.lon, bz.zone_id, '{{"source": "api-bench"}}', %(reg)s, %(reg)s, %(reg)s
        FROM generate_series(1, %(n)s) i
        JOIN api_bench_zone bz ON bz.idx = (i - 1) %% {nz}
        JOIN api_bench_spot s ON s.zone_id = bz.zone_id AND s.rn = (i - 1) / {nz} + 1
        JOIN api_bench_kind k ON {rnd("i", 3)} >= k.lo AND {rnd("i", 3)} < k.hi
        ORDER BY i""", {"eui": EUI_BASE, "n": devices, "reg": start - timedelta(days=1)})
    # Per device: its reporting offset, radio, gateway and fate (1 % never seen, 2 % silent for days,
    # 7 % hourly to the end, the rest at their kind's interval in the last two hours).
    conn.execute(f"""CREATE UNLOGGED TABLE api_bench_dev AS
        SELECT d.id, d.zone_id, k.kind, k.codec_id, k.f_port,
               CASE WHEN f.fate < 0.10 THEN 3600 ELSE k.interval_s END AS step,
               CASE WHEN f.fate < 0.01 THEN %(start)s::timestamptz
                    WHEN f.fate < 0.03 THEN %(now)s::timestamptz - interval '1 hour' * (3 + floor({rnd("d.id", 6)}
                                            * (%(hours)s - 3)))
                    ELSE %(now)s::timestamptz END AS stop_at,
               floor({rnd("d.id", 21)} * 3600)::int AS offset_s, floor({rnd("d.id", 23)} * 6)::int2 AS dr,
               floor({rnd("d.id", 24)} * 5000)::int8 AS fcnt0, -75 - 40 * {rnd("d.id", 25)} AS rssi,
               8 - 18 * {rnd("d.id", 26)} AS snr,
               (SELECT g.id FROM gateways g ORDER BY g.id OFFSET bz.idx * 2 + ({rnd("d.id", 27)} < 0.5)::int
                LIMIT 1) AS gateway_id
        FROM devices d JOIN api_bench_kind k ON k.kind = d.kind JOIN api_bench_zone bz ON bz.zone_id = d.zone_id
        CROSS JOIN LATERAL (SELECT {rnd("d.id", 5)} AS fate) f""",
                 {"start": start, "now": now, "hours": days * 24})
    conn.execute("ALTER TABLE api_bench_dev ADD PRIMARY KEY (id)")
    conn.execute("ANALYZE api_bench_kind, api_bench_pair, api_bench_dev")


TABLES = ("devices", "gateways", "uplinks", "measurements", "rollup_device_hourly", "rollup_zone_hourly")


def table_sizes(conn: Connection, tables: tuple[str, ...] = TABLES) -> None:
    """Rows and bytes per table; hypertables and continuous aggregates with all their chunks (compressed too)."""
    print(f"  {'table':<22}{'rows':>12}{'heap':>11}{'indexes':>11}{'total':>11}")
    for table in tables:
        count = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert count is not None
        mib = [f"{v / 2**20:,.0f} MiB" for v in relation_size(conn, table)]
        print(f"  {table:<22}{int(count[0]):>12,}{mib[0]:>11}{mib[1]:>11}{mib[2]:>11}")
    size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()
    print(f"  database: {size[0] if size else '?'}")


class ApiServer:
    """`ioc api` in a subprocess of its own session, so Ctrl-C reaches only us and we stop it in order."""

    def __init__(self, database_url: str, log: Path) -> None:
        self.port = free_port()
        self.log = log
        script = Path(sys.executable).with_name("ioc")
        command = [str(script), "api"] if script.exists() else [sys.executable, "-m", "ioc_cli", "api"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}  # no ChirpStack, no stray knobs
        env.update(IOC_DATABASE_URL=database_url, IOC_API_HOST="127.0.0.1", IOC_API_PORT=str(self.port))
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"`ioc api` exited with {self.proc.returncode} before it was ready:\n{self.tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
                conn.close()
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"`ioc api` was not ready on port {self.port} within {timeout_s:.0f} s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Client:
    """One keep-alive HTTP/1.1 connection with an API key."""

    def __init__(self, port: int, key: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Authorization": f"Bearer {key}"}

    def get(self, path: str) -> tuple[int, bytes, float]:
        started = time.perf_counter()
        self.conn.request("GET", path, headers=self.headers)
        response = self.conn.getresponse()
        body = response.read()
        return response.status, body, time.perf_counter() - started


@dataclass(frozen=True)
class Endpoint:
    name: str
    key: str
    path: Callable[[int], str]
    required: bool = False


@dataclass
class Result:
    name: str
    latencies_ms: np.ndarray
    seconds: float
    errors: int
    size: int
    required: bool
    clients: int = 1

    def row(self) -> str:
        p50, p95, p99, pmax = np.percentile(self.latencies_ms, [50, 95, 99, 100])
        verdict = ""
        if self.required:
            verdict = "PASS" if p95 < TARGET_MS and not self.errors else "FAIL"
        errors = f"  {self.errors} errors" if self.errors else ""
        return (f"  {self.name:<44}{len(self.latencies_ms):>6}{p50:>8.1f}{p95:>8.1f}{p99:>8.1f}{pmax:>8.1f}"
                f"{len(self.latencies_ms) / self.seconds:>9.1f}{self.size / 1024:>9.1f}  {verdict}{errors}")


HEADER = (f"  {'endpoint':<44}{'n':>6}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}{'req/s':>9}{'KiB':>9}\n"
          f"  {'':<50}{'(milliseconds)':^32}")


def run(port: int, endpoint: Endpoint, requests: int, warmup: int, clients: int = 1) -> Result:
    """``requests`` timed requests per client after ``warmup`` untimed ones; clients run in threads."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    sizes = [0] * clients
    barrier = threading.Barrier(clients + 1)

    failures: list[str] = []

    def worker(c: int) -> None:
        try:
            client = Client(port, endpoint.key)
            for i in range(warmup):
                status, body, _ = client.get(endpoint.path(-1 - i - c * warmup))
                if status != 200:
                    raise RuntimeError(f"HTTP {status}: {body[:300]!r}")
            barrier.wait()
            for i in range(requests):
                status, body, took = client.get(endpoint.path(i * clients + c))
                latencies[c].append(took * 1000)
                errors[c] += status != 200
                sizes[c] = len(body)
        except (OSError, http.client.HTTPException, RuntimeError, threading.BrokenBarrierError) as err:
            failures.append(f"{type(err).__name__}: {err}")
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in range(clients)]
    for t in threads:
        t.start()
    with contextlib.suppress(threading.BrokenBarrierError):  # a failed client says why below
        barrier.wait(timeout=300)
    started = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{endpoint.name}: {failures[0]}")
    return Result(endpoint.name, np.array([x for per in latencies for x in per]), seconds, sum(errors),
                  max(sizes), endpoint.required, clients)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=5000, help="registered devices (default 5000)")
    parser.add_argument("--days", type=int, default=30, help="days of hourly data up to now; also the span of "
                        "the long device series (default 30)")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per endpoint (default 200)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed requests first (default 10)")
    parser.add_argument("--clients", type=int, default=2, help="clients of the concurrent pass over the required "
                        "endpoints; 0 skips it (default 2)")
    add_mode_argument(parser)
    parser.add_argument("--database-url", help="fill and measure this (empty) database instead of starting one; "
                        "its server decides the mode unless --mode names one")
    parser.add_argument("--skip-fill", action="store_true", help="with --database-url: measure the data already "
                        "there, e.g. a database left by --keep (its 'last hour' is then older)")
    parser.add_argument("--keep", action="store_true", help="leave the local PostgreSQL running with its data, "
                        "for EXPLAIN; prints its URL and how to stop it")
    args = parser.parse_args()
    if args.devices < 1 or args.days < 1 or args.requests < 1 or args.warmup < 1 or args.clients < 0:
        parser.error("--devices, --days, --requests and --warmup must be positive, --clients not negative")
    if args.skip_fill and not args.database_url:
        parser.error("--skip-fill needs --database-url")
    signal.signal(signal.SIGTERM, _on_sigterm)

    # One database per mode, filled and measured one after the other so they never share the cores.
    modes = modes_for(args.mode, args.database_url)
    root = Path(tempfile.mkdtemp(prefix="ioc-api-bench-"))
    measured: dict[Mode, list[Result]] = {}
    try:
        for mode in modes:
            with mode_database(root, mode, args.database_url, keep=args.keep) as url:
                installed, results = _bench_mode(url, mode, args, root)
                measured[installed] = results
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    shown = [m for m in MODES if m in measured]
    print(f"\nsummary: p95 with {args.devices} devices and {args.days} days, one client; "
          f"target < {TARGET_MS:.0f} ms for the required requests (*)")
    names = [r.name for r in measured[shown[0]]]
    rows = []
    for at, name in enumerate(names):
        required = measured[shown[0]][at].required
        rows.append((f"{'*' if required else ' '} {name}",
                     {m: float(np.percentile(measured[m][at].latencies_ms, 95)) for m in shown},
                     TARGET_MS if required else None))
    side_by_side(rows, shown, label="request")


def _bench_mode(url: str, mode: Mode | None, args: argparse.Namespace, root: Path) -> tuple[Mode, list[Result]]:
    """Fill (unless --skip-fill) and measure one database; the sequential results, in endpoint order."""
    server: ApiServer | None = None
    try:
        with psycopg.connect(url) as conn:
            installed = install_schema(conn, mode)  # leaves the connection in autocommit
            print(f"\n=== {installed} mode ===\nmachine: {machine(conn)}")
            seed_zones(conn, load_default_zones())
            existing = conn.execute("SELECT count(*) FROM devices").fetchone()
            if args.skip_fill:
                print(f"measuring the data in place ({existing[0] if existing else 0} devices)")
            elif existing and existing[0]:
                raise SystemExit(f"the database holds {existing[0]} devices; the benchmark fills an empty one "
                                 "(or add --skip-fill to measure what is there)")
            else:
                now = datetime.now(UTC)
                print(f"\nfilling: {args.devices} devices, {args.days} days up to {iso(now)}", flush=True)
                started = time.monotonic()
                pause_jobs(conn)
                fill(url, args.devices, args.days, now)
                bring_rollups_up_to_date(url, parts=cpu_parts())
                vacuum = time.monotonic()
                conn.execute("VACUUM ANALYZE")
                print(f"  VACUUM ANALYZE: {time.monotonic() - vacuum:.1f} s")
                print(f"fill took {time.monotonic() - started:.1f} s")
            table_sizes(conn)
            district = conn.execute("SELECT code FROM zones WHERE valid_to IS NULL AND level = 'district' "
                                    "ORDER BY code <> 'hai-chau', code LIMIT 1").fetchone()
            assert district is not None
            district_code = str(district[0])
            stamp = f"{os.getpid()}-{int(time.time())}"
            keys = {name: create_user(conn, f"bench-{name}-{stamp}", role, zones, actor="api-bench")[1].key
                    for name, role, zones in (("admin", "admin", []), ("city", "operator", []),
                                              ("district", "operator", [district_code]))}
            devices = [(str(r[0]), METRICS[str(r[1])][0][0]) for r in conn.execute(
                "SELECT dev_eui, kind FROM devices WHERE first_uplink_at IS NOT NULL AND kind = ANY(%s) ORDER BY id",
                (list(METRICS),)).fetchall()]
        if not devices:
            raise SystemExit("no devices with uplinks to measure")

        server = ApiServer(url, root / f"api-{installed}.log")
        started = time.monotonic()
        server.wait_ready()
        print(f"\n`ioc api` ready on 127.0.0.1:{server.port} in {time.monotonic() - started:.1f} s "
              f"(log: {server.log})")
        return installed, _measure(server, args, keys, devices, district_code)
    finally:
        if server is not None:
            server.stop()


def _measure(server: ApiServer, args: argparse.Namespace, keys: dict[str, str], devices: list[tuple[str, str]],
             district_code: str) -> list[Result]:
    order = np.random.default_rng(42).permutation(len(devices))

    def device(i: int) -> tuple[str, str]:
        return devices[int(order[i % len(order)])]

    def series(i: int, span: timedelta, bucket: str = "auto", fmt: str = "json") -> str:
        eui, metric = device(i)
        end = datetime.now(UTC)
        return (f"/api/v1/devices/{eui}/measurements?metric={metric}&from={iso(end - span)}&to={iso(end)}"
                f"&bucket={bucket}&format={fmt}")

    long = timedelta(days=args.days)
    endpoints = [
        Endpoint("GET /zones (city operator, all zones)", keys["city"], lambda i: "/api/v1/zones", True),
        Endpoint(f"GET /zones/{district_code} (district operator)", keys["district"],
                 lambda i: f"/api/v1/zones/{district_code}", True),
        Endpoint(f"series {args.days} d, auto bucket, JSON", keys["city"], lambda i: series(i, long), True),
        Endpoint(f"series {args.days} d, auto bucket, CSV", keys["city"],
                 lambda i: series(i, long, fmt="csv"), True),
        Endpoint("series 7 d, bucket=5m (measurements)", keys["city"],
                 lambda i: series(i, timedelta(days=7), "5m")),
        Endpoint("GET /devices?limit=50", keys["city"], lambda i: "/api/v1/devices?limit=50"),
        Endpoint(f"GET /devices?limit=50&zone={district_code}", keys["city"],
                 lambda i: f"/api/v1/devices?limit=50&zone={district_code}"),
        Endpoint("GET /devices?limit=50&health=silent", keys["city"],
                 lambda i: "/api/v1/devices?limit=50&health=silent"),
        Endpoint("GET /devices/{eui}/overview", keys["city"], lambda i: f"/api/v1/devices/{device(i)[0]}/overview"),
        Endpoint("GET /gateways", keys["city"], lambda i: "/api/v1/gateways"),
    ]

    probe = Client(server.port, keys["city"])
    status, body, _ = probe.get("/api/v1/zones")
    if status != 200:
        raise SystemExit(f"GET /api/v1/zones answered {status}: {body[:300]!r}")
    summaries = json.loads(body)
    health = {k: sum(z["devices"][k] for z in summaries) for k in ("reporting", "late", "silent", "never_seen")}
    print(f"zones: {len(summaries)}, devices by health {health}, uplinks in the last hour "
          f"{sum(z['uplinks_last_hour'] for z in summaries):,}, key values per zone "
          f"{min(len(z['key_values']) for z in summaries)}-{max(len(z['key_values']) for z in summaries)}")
    status, body, _ = probe.get(series(0, long))
    if status != 200:
        raise SystemExit(f"the {args.days}-day series answered {status}: {body[:300]!r}")
    found = json.loads(body)
    print(f"a {args.days}-day series (auto): bucket {found['bucket']} from {found['source']}, "
          f"{len(found['points'])} points")

    # Anything else running on these cores (tests, builds) shows up in the tail latencies.
    print("load average before measuring: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"\nsequential, one keep-alive client, {args.requests} requests each after {args.warmup} warm-up:")
    print(HEADER)
    results = []
    for endpoint in endpoints:
        results.append(run(server.port, endpoint, args.requests, args.warmup))
        print(results[-1].row(), flush=True)
    if args.clients:
        print(f"\n{args.clients} concurrent clients, {args.requests} requests each (req/s: all clients):")
        print(HEADER)
        for endpoint in endpoints:
            if endpoint.required:
                print(run(server.port, endpoint, args.requests, args.warmup, args.clients).row(), flush=True)

    print("load average after measuring: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    return results


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # everything was stopped on the way out
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
