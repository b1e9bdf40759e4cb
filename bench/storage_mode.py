"""The storage mode a benchmark runs in: its server, its schema, its machine line and how its rollups catch up.

The benchmarks write raw rows only (uplinks, measurements, events, worker stats), the way the ingest does,
and then bring the hourly rollups up to date the way a deployment of that mode does:

* plain PostgreSQL: the ingest worker adds every batch to the rollup tables in the batch's own transaction
  (ingest/writer.py, ingest/stats.py). A month of batches adds up to one aggregate of the raw rows, so the
  fill inserts that aggregate once, with the writer's expressions (UTC hours, good values only).
* TimescaleDB: the rollups are continuous aggregates kept by background policy jobs. The fill pauses the
  jobs (so they do not run over half-written data and skew the fill's timing), then runs every policy job
  once by hand, as the scheduler would have over the month: the continuous aggregate refreshes first (their
  window reaches back 720 days, so this materialises the whole month up to ``end_offset`` before now), then
  compression (chunks older than 7 days), then retention, and schedules the jobs again, so the measuring
  runs against a deployment's steady state, job scheduler included.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import psycopg
from machine_info import host_line  # bench/ is the script's folder, first on sys.path

from gateways.database import Connection
from gateways.local_postgres import LocalPostgres, timescaledb_installed
from gateways.migrations import TimescaleChoice, migrate
from gateways.timescale_jobs import PolicyJob, pause_policy_jobs, resume_policy_jobs, run_policy_jobs

__all__ = [
    "MODES",
    "Mode",
    "add_mode_argument",
    "bring_rollups_up_to_date",
    "cpu_parts",
    "detected_mode",
    "install_schema",
    "machine",
    "mode_database",
    "modes_for",
    "open_server",
    "pause_jobs",
    "relation_size",
    "side_by_side",
]

Mode = Literal["postgresql", "timescaledb"]
MODES: tuple[Mode, ...] = ("postgresql", "timescaledb")

# Policy jobs in the order a deployment's scheduler settles into: rollups materialised from raw chunks,
# then raw chunks compressed, then anything past retention dropped.
def add_mode_argument(parser: argparse.ArgumentParser) -> None:
    """``--mode postgresql|timescaledb|both``; see ``modes_for`` for what no choice means."""
    default = "both" if timescaledb_installed() else "postgresql"
    parser.add_argument("--mode", choices=("postgresql", "timescaledb", "both"),
                        help=f"storage mode(s) to fill and measure, one after the other (default here: {default}; "
                        "with --database-url, the mode that server offers)")


def modes_for(choice: str | None, database_url: str | None) -> list[Mode | None]:
    """The modes to run one after the other; None stands for "whatever the given database's server offers".

    Without a choice: both where TimescaleDB is installed, else plain PostgreSQL; one database given is
    measured in its server's mode.
    """
    if choice is None:
        if database_url:
            return [None]
        choice = "both" if timescaledb_installed() else "postgresql"
    if choice == "both":
        if database_url:
            raise SystemExit("--mode both needs two servers: leave out --database-url")
        return list(MODES)
    return [m for m in MODES if m == choice]


def open_server(root: Path, mode: Mode) -> LocalPostgres:
    """A durable local PostgreSQL for one mode: TimescaleDB preloaded only in TimescaleDB mode."""
    pg = LocalPostgres(root / f"pg-{mode}", durable=True, timescaledb=mode == "timescaledb")
    pg.start()
    return pg


@contextlib.contextmanager
def mode_database(root: Path, mode: Mode | None, database_url: str | None, *, keep: bool) -> Iterator[str]:
    """The URL of the database to fill: the one given, or a local server of ``mode`` under ``root``.

    With ``keep`` the local server is left running (when the body finished) and how to stop it is printed.
    """
    if database_url:
        yield database_url
        return
    assert mode is not None
    pg = open_server(root, mode)
    finished = False
    try:
        yield pg.url
        finished = True
    finally:
        if keep and finished:
            runas = "runuser -u postgres -- " if os.geteuid() == 0 else ""
            print(f"\nkept ({mode}): {pg.url}\n  stop with: {runas}{pg.bindir / 'pg_ctl'} -D {pg.data_dir} stop"
                  f" && rm -rf {pg.data_dir}")
        else:
            pg.stop("immediate")
            shutil.rmtree(pg.data_dir, ignore_errors=True)


def install_schema(conn: Connection, mode: Mode | None) -> Mode:
    """The platform's migrations in ``mode`` (None: whatever the server offers); leaves autocommit on."""
    choice: TimescaleChoice = "auto" if mode is None else "on" if mode == "timescaledb" else "off"
    installed, _ = migrate(conn, choice)
    if mode is not None and installed != mode:
        raise SystemExit(f"asked for {mode} mode, the migrations installed {installed}")
    return installed


def detected_mode(conn: Connection) -> Mode:
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return "timescaledb" if row else "postgresql"


def machine(conn: Connection) -> str:
    """The host, PostgreSQL with the settings that matter here, and the storage mode with its version."""
    row = conn.execute("SELECT current_setting('server_version'), current_setting('shared_buffers'), "
                       "current_setting('work_mem'), current_setting('fsync'), "
                       "(SELECT extversion FROM pg_extension WHERE extname = 'timescaledb')").fetchone()
    assert row is not None
    mode = f"TimescaleDB {row[4]} mode" if row[4] else "plain PostgreSQL mode"
    return (f"{host_line()}\n"
            f"PostgreSQL {row[0]} (shared_buffers {row[1]}, work_mem {row[2]}, fsync {row[3]}), {mode}")


def pause_jobs(conn: Connection) -> None:
    """Keep TimescaleDB's scheduler off the tables while the fill writes them (a no-op in plain mode)."""
    if detected_mode(conn) == "timescaledb":
        pause_policy_jobs(conn)


def bring_rollups_up_to_date(url: str, *, parts: int = 1) -> None:
    """Fill or refresh the four hourly rollups from the raw rows, as the database's mode keeps them."""
    with psycopg.connect(url, autocommit=True) as conn:
        mode = detected_mode(conn)
        if mode == "timescaledb":
            _run_policy_jobs(conn)
            return
    _plain_rollups(url, parts)


def _plain_rollups(url: str, parts: int) -> None:
    """What ingest/writer.py and ingest/stats.py add batch by batch, summed over the month in one pass."""
    device = """INSERT INTO rollup_device_hourly
        SELECT date_trunc('hour', time, 'UTC'), device_id, metric_id, count(*), sum(value), min(value), max(value)
        FROM measurements WHERE quality = 0 AND device_id %% %(parts)s = %(part)s
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""
    others = (
        ("rollup_zone_hourly", """INSERT INTO rollup_zone_hourly
            SELECT date_trunc('hour', time, 'UTC'), zone_id, metric_id, count(*), sum(value), min(value),
                   max(value)
            FROM measurements WHERE quality = 0 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""),
        ("rollup_gateway_hourly", """INSERT INTO rollup_gateway_hourly
            SELECT date_trunc('hour', time, 'UTC'), gateway_id, zone_id, count(*), sum(rssi), count(rssi),
                   min(rssi), sum(snr::float8), count(snr), min(snr)
            FROM uplinks GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""),
        ("rollup_ingest_hourly", """INSERT INTO rollup_ingest_hourly
            SELECT date_trunc('hour', time, 'UTC'), worker, sum(interval_s::float8), sum(received), sum(uplinks),
                   sum(duplicates), sum(measurements), sum(device_events), sum(dead_letters), sum(batches),
                   sum(batch_size_avg::float8 * batches), sum(batch_ms_avg::float8 * batches), max(lag_ms_p50),
                   max(lag_ms_p99), sum(retries)
            FROM ingest_stats GROUP BY 1, 2 ORDER BY 1, 2"""),
    )
    step = time.monotonic()
    run_in_parts(url, device, {}, parts)
    print(f"  rollup_device_hourly: {time.monotonic() - step:.1f} s", flush=True)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET work_mem = '512MB'")
        for name, statement in others:
            step = time.monotonic()
            conn.execute(statement)
            print(f"  {name}: {time.monotonic() - step:.1f} s", flush=True)


def _run_policy_jobs(conn: Connection) -> None:
    step = time.monotonic()

    def done(job: PolicyJob) -> None:
        nonlocal step
        print(f"  job {job.job_id} {job.proc} on {_relation_name(conn, job.table)}: {time.monotonic() - step:.1f} s",
              flush=True)
        step = time.monotonic()

    run_policy_jobs(conn, done)
    resume_policy_jobs(conn)
    row = conn.execute("""SELECT count(*) FILTER (WHERE is_compressed), count(*)
                          FROM timescaledb_information.chunks""").fetchone()
    assert row is not None
    print(f"  chunks compressed: {row[0]} of {row[1]}; jobs scheduled again", flush=True)


def _relation_name(conn: Connection, table: str) -> str:
    """A continuous aggregate's name for its materialisation hypertable, else the table's own name."""
    row = conn.execute("SELECT view_name FROM timescaledb_information.continuous_aggregates "
                       "WHERE materialization_hypertable_name = %s", (table,)).fetchone()
    return str(row[0]) if row else table


def relation_size(conn: Connection, name: str) -> tuple[int, int, int]:
    """Heap (with TOAST and compressed data), indexes and total bytes of a table, hypertable or aggregate."""
    if detected_mode(conn) == "timescaledb":
        # A continuous aggregate's rows live in its materialisation hypertable; the view itself has none.
        row = conn.execute(
            """SELECT format('%%I.%%I', materialization_hypertable_schema, materialization_hypertable_name)
               FROM timescaledb_information.continuous_aggregates WHERE view_name = %s
               UNION ALL
               SELECT format('%%I.%%I', hypertable_schema, hypertable_name)
               FROM timescaledb_information.hypertables WHERE hypertable_name = %s""", (name, name)).fetchone()
        if row:
            sizes = conn.execute("SELECT coalesce(table_bytes, 0) + coalesce(toast_bytes, 0), "
                                 "coalesce(index_bytes, 0), coalesce(total_bytes, 0) "
                                 "FROM hypertable_detailed_size(%s)", (str(row[0]),)).fetchone()
            assert sizes is not None
            return int(sizes[0]), int(sizes[1]), int(sizes[2])
    sizes = conn.execute("SELECT pg_table_size(%(t)s), pg_indexes_size(%(t)s), pg_total_relation_size(%(t)s)",
                         {"t": name}).fetchone()
    assert sizes is not None
    return int(sizes[0]), int(sizes[1]), int(sizes[2])


def side_by_side(rows: Sequence[tuple[str, dict[Mode, float], float | None]], modes: Sequence[Mode], *,
                 label: str) -> None:
    """One line per measure: each mode's p95 (ms), and a verdict where the measure has a target."""
    names = {"postgresql": "plain PG", "timescaledb": "TimescaleDB"}
    print(f"  {label:<66}" + "".join(f"{names[m]:>13}" for m in modes) + "  verdict")
    for name, by_mode, target in rows:
        cells = "".join(f"{by_mode[m]:>10.1f} ms" if m in by_mode else f"{'-':>13}" for m in modes)
        verdict = ""
        if target is not None:
            verdict = "ok" if by_mode and max(by_mode.values()) < target else f"OVER {target:.0f} ms"
        print(f"  {name[:65]:<66}{cells}  {verdict}")


def run_in_parts(url: str, statement: str, params: dict[str, object], parts: int) -> None:
    """Run ``statement`` in ``parts`` sessions at once, each with its ``part`` of ``parts`` set (a filter such
    as ``device_id % parts = part`` splits the work); re-raise the first error."""
    failures: list[BaseException] = []

    def one(part: int) -> None:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("SET work_mem = '256MB'")
                conn.execute(statement, {**params, "part": part, "parts": parts})
        except BaseException as err:  # handed to the caller's thread
            failures.append(err)

    threads = [threading.Thread(target=one, args=(p,), daemon=True) for p in range(parts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]


def cpu_parts() -> int:
    """Sessions for the set-based fill statements: one per core, at most four."""
    return max(1, min(4, os.cpu_count() or 1))
