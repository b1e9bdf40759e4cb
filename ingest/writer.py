"""Write one batch in one transaction: COPY into staging, idempotent insert, then the dependent rows.

Idempotency rests on ChirpStack's deduplication id: an uplink already stored is skipped together with its
measurements, so a redelivered message (worker crash, broker restart) adds nothing. An uplink whose decode
failed earlier is the one exception: storing it again after a codec fix fills in its measurements.
"""

from __future__ import annotations

import uuid
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateways.binary_copy import copy_new_rows, copy_rows
from gateways.database import Connection
from gateways.migrations import Mode
from ingest.dead_letters import write_dead_letters
from ingest.pipeline import Batch

__all__ = ["WriteResult", "write_batch"]

_UPLINK_COLUMNS = (
    "time", "received_at", "device_id", "deduplication_id", "zone_id", "dev_addr", "f_cnt", "f_port", "dr",
    "confirmed", "adr", "frequency", "spreading_factor", "rssi", "snr", "gateway_count", "gateway_id",
    "payload", "codec_id", "decode_status", "event_time",
)
_UPLINK_TYPES = (
    "timestamptz", "timestamptz", "int4", "uuid", "int4", "text", "int8", "int2", "int2", "bool", "bool",
    "int8", "int2", "int2", "float4", "int2", "int4", "bytea", "text", "text", "timestamptz",
)
_MEASUREMENT_COLUMNS = ("time", "device_id", "zone_id", "metric_id", "value", "quality")
_MEASUREMENT_TYPES = ("timestamptz", "int4", "int4", "int2", "float8", "int2")
_EVENT_COLUMNS = (
    "time", "received_at", "device_id", "event_type", "event_key", "battery_level", "margin",
    "external_power_source", "level", "code", "details", "event_time",
)
_EVENT_TYPES = (
    "timestamptz", "timestamptz", "int4", "text", "uuid", "float4", "int2", "bool", "text", "text", "jsonb",
    "timestamptz",
)


@dataclass(frozen=True, slots=True)
class WriteResult:
    uplinks: int
    duplicates: int
    measurements: int
    device_events: int
    dead_letters: int
    # Messages of this batch that ended as dead letters (new or already known), for replay bookkeeping.
    failed: frozenset[uuid.UUID] = frozenset()
    # Deduplication ids of the uplinks this write stored (repeats left out), for the open feed.
    stored: tuple[uuid.UUID, ...] = ()


_STAGED: weakref.WeakSet[Connection] = weakref.WeakSet()


def _ensure_staging(conn: Connection) -> None:
    # Temporary tables live as long as the connection; ON COMMIT DELETE ROWS empties them per batch.
    if conn in _STAGED:
        return
    conn.execute(
        """CREATE TEMP TABLE IF NOT EXISTS stage_uplinks
               (LIKE uplinks INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
           CREATE TEMP TABLE IF NOT EXISTS stage_events
               (LIKE device_events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
           CREATE TEMP TABLE IF NOT EXISTS stage_measurements
               (LIKE measurements INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;"""
    )
    _STAGED.add(conn)


def _copy(conn: Connection, table: str, columns: tuple[str, ...], types: tuple[str, ...],
          rows: list[tuple[Any, ...]]) -> None:
    if rows:
        copy_rows(conn, table, columns, types, rows)


def write_batch(conn: Connection, batch: Batch, mode: Mode) -> WriteResult:
    """Write ``batch`` and commit; the database's errors are psycopg's, for the caller to translate (its
    ``gateways.database_errors.translated``) and sort into retry or skip."""
    try:
        return _write(conn, batch, mode)
    except BaseException:
        # The staging tables may have been created in the transaction that just rolled back.
        _STAGED.discard(conn)
        raise


def _write(conn: Connection, batch: Batch, mode: Mode) -> WriteResult:
    with conn.transaction():
        _ensure_staging(conn)
        if batch.flagged:
            _pin_untrusted_times(conn, batch)
        inserted, fresh = _insert_uplinks(conn, batch)
        new_events = _insert_events(conn, batch)
        if len(inserted) == len(batch.uplink_measurements):
            # Every uplink of the batch is new (the usual case): no look-ups per row.
            measurements = [row for rows in batch.uplink_measurements.values() for row in rows]
        else:
            measurements = [row for key in inserted for row in batch.uplink_measurements.get(key, ())]
        measurements += [row for key in new_events for row in batch.event_measurements.get(key, ())]
        if mode == "postgresql":
            _insert_measurements_and_rollups(conn, measurements)
            _rollup_gateways(conn, fresh)
        else:
            # TimescaleDB keeps the rollups itself (continuous aggregates).
            _copy(conn, "measurements", _MEASUREMENT_COLUMNS, _MEASUREMENT_TYPES, measurements)
        _touch_gateways(conn, batch.gateways_seen)
        dead = write_dead_letters(conn, batch.dead_letters)
    return WriteResult(
        uplinks=len(inserted),
        duplicates=len(batch.uplinks) - len(inserted),
        measurements=len(measurements),
        device_events=len(new_events),
        dead_letters=dead,
        failed=frozenset(d.fingerprint for d in batch.dead_letters),
        stored=tuple(inserted),
    )


def _pin_untrusted_times(conn: Connection, batch: Batch) -> None:
    """Rows whose event time was not trusted carry the receive time, which differs on every delivery; the
    unique keys hold the time. So such a row takes the time of its copy already stored (or earlier in this
    batch), and a redelivery stays a duplicate. Rare rows: one look-up per batch that has any."""
    uplinks = [row for row in batch.uplinks if row[20] is not None]
    if uplinks:
        stored = dict(((d, q), t) for d, q, t in conn.execute(
            """SELECT u.device_id, u.deduplication_id, u.time FROM uplinks u
               JOIN unnest(%s::int4[], %s::uuid[]) AS k(d, q) ON u.device_id = k.d AND u.deduplication_id = k.q""",
            ([r[2] for r in uplinks], [r[3] for r in uplinks])).fetchall())
        pinned: list[tuple[Any, ...]] = []
        for row in batch.uplinks:
            if row[20] is not None:
                when = stored.setdefault((row[2], row[3]), row[0])
                if when != row[0]:
                    row = (when, *row[1:])
                    measurements = batch.uplink_measurements.get(row[3], [])
                    batch.uplink_measurements[row[3]] = [(when, *m[1:]) for m in measurements]
            pinned.append(row)
        batch.uplinks = pinned
    events = [row for row in batch.events if row[11] is not None]
    if events:
        known = dict(((d, k, e), t) for d, k, e, t in conn.execute(
            """SELECT v.device_id, v.event_key, v.event_type, v.time FROM device_events v
               JOIN unnest(%s::int4[], %s::uuid[], %s::text[]) AS k(d, q, e)
                 ON v.device_id = k.d AND v.event_key = k.q AND v.event_type = k.e""",
            ([r[2] for r in events], [r[4] for r in events], [r[3] for r in events])).fetchall())
        kept: list[tuple[Any, ...]] = []
        for row in batch.events:
            if row[11] is not None:
                when = known.setdefault((row[2], row[4], row[3]), row[0])
                if when != row[0]:
                    row = (when, *row[1:])
                    readings = batch.event_measurements.get(row[4], [])
                    batch.event_measurements[row[4]] = [(when, *m[1:]) for m in readings]
            kept.append(row)
        batch.events = kept


def _insert_uplinks(conn: Connection, batch: Batch) -> tuple[list[uuid.UUID], list[tuple[Any, ...]]]:
    """Store the batch's uplinks; returns the ids stored (new or re-decoded) and the rows that are new."""
    if not batch.uplinks:
        return [], []
    # Repeats inside one batch (a duplicate delivery right behind the first) would make the upsert
    # touch a row twice, which PostgreSQL refuses.
    # Keyed by the UUID's int: hashing a UUID object runs Python code, an int's does not.
    unique = list({(row[2], row[3].int, row[0]): row for row in batch.uplinks}.values())
    # Almost every batch is new data: COPY straight into the table. A repeat delivery makes the COPY
    # fail on the unique key; then the savepoint is rolled back and the idempotent path below runs.
    if copy_new_rows(conn, "uplinks", _UPLINK_COLUMNS, _UPLINK_TYPES, unique):
        return [row[3] for row in unique], unique
    _copy(conn, "stage_uplinks", _UPLINK_COLUMNS, _UPLINK_TYPES, unique)
    rows = conn.execute(
        """INSERT INTO uplinks SELECT * FROM stage_uplinks
           ON CONFLICT (device_id, deduplication_id, time) DO UPDATE
               SET decode_status = EXCLUDED.decode_status, codec_id = EXCLUDED.codec_id
               WHERE uplinks.decode_status IN ('error', 'no_codec')
                 AND EXCLUDED.decode_status NOT IN ('error', 'no_codec')
           RETURNING deduplication_id, xmax = 0"""
    ).fetchall()
    # xmax = 0 marks a row this statement inserted; an updated one (a re-decoded uplink) is already counted.
    new = {r[0] for r in rows if r[1]}
    return [r[0] for r in rows], [row for row in unique if row[3] in new]


def _insert_events(conn: Connection, batch: Batch) -> list[uuid.UUID]:
    if not batch.events:
        return []
    unique = list({(row[2], row[4], row[3], row[0]): row for row in batch.events}.values())
    _copy(conn, "stage_events", _EVENT_COLUMNS, _EVENT_TYPES, unique)
    rows = conn.execute(
        """INSERT INTO device_events SELECT * FROM stage_events
           ON CONFLICT (device_id, event_key, event_type, time) DO NOTHING
           RETURNING event_key"""
    ).fetchall()
    return [r[0] for r in rows]


def _insert_measurements_and_rollups(conn: Connection, measurements: list[tuple[Any, ...]]) -> None:
    """Plain-PostgreSQL rollups, kept exact in the batch's transaction.

    The batch goes to a staging table once; PostgreSQL then inserts it and aggregates it into both rollup
    tables. Doing the aggregation in SQL leaves the worker's single Python core for decoding, while the
    database runs on another. Hours are cut in UTC, as TimescaleDB's time_bucket does.
    """
    if not measurements:
        return
    _copy(conn, "stage_measurements", _MEASUREMENT_COLUMNS, _MEASUREMENT_TYPES, measurements)
    conn.execute("INSERT INTO measurements SELECT * FROM stage_measurements")
    conn.execute(
        """INSERT INTO rollup_device_hourly AS r
           SELECT date_trunc('hour', time, 'UTC'), device_id, metric_id, count(*), sum(value), min(value),
                  max(value)
           FROM stage_measurements WHERE quality = 0 GROUP BY 1, 2, 3
           ON CONFLICT (device_id, metric_id, bucket) DO UPDATE
               SET n = r.n + EXCLUDED.n, total = r.total + EXCLUDED.total,
                   minimum = LEAST(r.minimum, EXCLUDED.minimum), maximum = GREATEST(r.maximum, EXCLUDED.maximum)"""
    )
    conn.execute(
        """INSERT INTO rollup_zone_hourly AS r
           SELECT date_trunc('hour', time, 'UTC'), zone_id, metric_id, count(*), sum(value), min(value),
                  max(value)
           FROM stage_measurements WHERE quality = 0 GROUP BY 1, 2, 3
           ON CONFLICT (zone_id, metric_id, bucket) DO UPDATE
               SET n = r.n + EXCLUDED.n, total = r.total + EXCLUDED.total,
                   minimum = LEAST(r.minimum, EXCLUDED.minimum), maximum = GREATEST(r.maximum, EXCLUDED.maximum)"""
    )


def _rollup_gateways(conn: Connection, uplinks: list[tuple[Any, ...]]) -> None:
    """Plain-PostgreSQL rollup_gateway_hourly: new uplinks counted by UTC hour, gateway and zone."""
    if not uplinks:
        return
    groups: dict[tuple[datetime, int | None, int | None], list[Any]] = {}
    for row in uplinks:
        # time, ..., zone_id (4), ..., rssi (13), snr (14), ..., gateway_id (16): see _UPLINK_COLUMNS.
        key = (row[0].astimezone(UTC).replace(minute=0, second=0, microsecond=0), row[16], row[4])
        rssi, snr = row[13], row[14]
        g = groups.get(key)
        if g is None:
            # Sums stay NULL while no value came, as sum() over NULLs in the continuous aggregate.
            groups[key] = [1, rssi, int(rssi is not None), rssi, snr, int(snr is not None), snr]
            continue
        g[0] += 1
        if rssi is not None:
            g[1] = rssi if g[1] is None else g[1] + rssi
            g[2] += 1
            g[3] = rssi if g[3] is None else min(g[3], rssi)
        if snr is not None:
            g[4] = snr if g[4] is None else g[4] + snr
            g[5] += 1
            g[6] = snr if g[6] is None else min(g[6], snr)
    # Rows in one order in every worker, so two workers' upserts of the same hours cannot deadlock.
    keys = sorted(groups, key=lambda k: (k[0], -1 if k[1] is None else k[1], -1 if k[2] is None else k[2]))
    # n, rssi_total, rssi_n, rssi_min, snr_total, snr_n, snr_min: one array per column.
    columns = [list(c) for c in zip(*(groups[k] for k in keys), strict=True)]
    conn.execute(
        """INSERT INTO rollup_gateway_hourly AS r
           SELECT * FROM unnest(%s::timestamptz[], %s::int4[], %s::int4[], %s::int8[], %s::int8[], %s::int8[],
                                %s::int2[], %s::float8[], %s::int8[], %s::float4[])
           ON CONFLICT (gateway_id, zone_id, bucket) DO UPDATE
               SET n = r.n + EXCLUDED.n,
                   rssi_total = coalesce(r.rssi_total + EXCLUDED.rssi_total, r.rssi_total, EXCLUDED.rssi_total),
                   rssi_n = r.rssi_n + EXCLUDED.rssi_n, rssi_min = LEAST(r.rssi_min, EXCLUDED.rssi_min),
                   snr_total = coalesce(r.snr_total + EXCLUDED.snr_total, r.snr_total, EXCLUDED.snr_total),
                   snr_n = r.snr_n + EXCLUDED.snr_n,
                   snr_min = LEAST(r.snr_min, EXCLUDED.snr_min)""",
        ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys], *columns),
    )


def _touch_gateways(conn: Connection, seen: dict[int, datetime]) -> None:
    if not seen:
        return
    with conn.cursor() as cur:
        cur.execute(
            """UPDATE gateways g SET last_seen_at = GREATEST(g.last_seen_at, v.seen)
               FROM unnest(%s::int4[], %s::timestamptz[]) AS v(id, seen) WHERE g.id = v.id""",
            (list(seen.keys()), list(seen.values())),
        )
