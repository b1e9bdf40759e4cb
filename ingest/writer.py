"""Write one batch in one transaction: COPY into staging, idempotent insert, then the dependent rows.

Idempotency rests on ChirpStack's deduplication id: an uplink already stored is skipped together with its
measurements, so a redelivered message (worker crash, broker restart) adds nothing. An uplink whose decode
failed earlier is the one exception: storing it again after a codec fix fills in its measurements.

A transaction that stored measurements also notifies ``ioc_readings`` (``gateways.wakeups``), so the hazard
evaluator wakes up for them: one notification per commit, delivered only if the commit happens.
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from gateways.binary_copy import copy_new_rows, copy_rows
from gateways.database import Connection
from gateways.migrations import Mode
from gateways.wakeups import READINGS, notify
from ingest.dead_letters import write_dead_letters
from ingest.pipeline import Batch
from ingest.rows import (
    DEVICE_EVENT,
    EVENT_DEVICE_ID,
    EVENT_EVENT_TIME,
    EVENT_KEY,
    EVENT_TIME,
    EVENT_TYPE,
    MEASUREMENT,
    MEASUREMENT_TIME,
    UPLINK,
    UPLINK_DEDUPLICATION_ID,
    UPLINK_DEVICE_ID,
    UPLINK_EVENT_TIME,
    UPLINK_GATEWAY_ID,
    UPLINK_RSSI,
    UPLINK_SNR,
    UPLINK_TIME,
    UPLINK_ZONE_ID,
    EventRow,
    MeasurementRow,
    RowLayout,
    UplinkRow,
)

__all__ = ["WriteResult", "write_batch"]


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one write stored; results of parts of a batch add up with ``+``."""

    uplinks: int = 0
    duplicates: int = 0
    measurements: int = 0
    device_events: int = 0
    dead_letters: int = 0
    failed: frozenset[uuid.UUID] = frozenset()
    """Messages of this batch that ended as dead letters (new or already known), for replay bookkeeping."""
    stored: tuple[uuid.UUID, ...] = ()
    """Deduplication ids of the uplinks this write stored (repeats left out), for the open feed."""
    readings: Mapping[uuid.UUID, Sequence[MeasurementRow]] = field(default_factory=dict)
    """The batch's measurement rows by uplink, with the times they were written at, for the open feed."""

    def __add__(self, other: WriteResult) -> WriteResult:
        return WriteResult(
            uplinks=self.uplinks + other.uplinks,
            duplicates=self.duplicates + other.duplicates,
            measurements=self.measurements + other.measurements,
            device_events=self.device_events + other.device_events,
            dead_letters=self.dead_letters + other.dead_letters,
            failed=self.failed | other.failed,
            stored=self.stored + other.stored,
            readings={**self.readings, **other.readings},
        )


class _Written(NamedTuple):
    """A batch's rows as they are written: its own, or copies whose untrusted times were pinned."""

    uplinks: Sequence[UplinkRow]
    uplink_measurements: Mapping[uuid.UUID, Sequence[MeasurementRow]]
    events: Sequence[EventRow]
    event_measurements: Mapping[uuid.UUID, Sequence[MeasurementRow]]


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


def _copy(conn: Connection, layout: RowLayout, rows: Sequence[tuple[Any, ...]], table: str | None = None) -> None:
    """COPY ``rows`` into ``layout``'s table, or into ``table`` (a staging table of the same columns)."""
    if rows:
        copy_rows(conn, table or layout.table, layout.columns, layout.types, rows)


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
        rows = _pin_untrusted_times(conn, batch) if batch.flagged else _Written(
            batch.uplinks, batch.uplink_measurements, batch.events, batch.event_measurements)
        inserted, fresh = _insert_uplinks(conn, rows.uplinks)
        new_events = _insert_events(conn, rows.events)
        if len(inserted) == len(rows.uplink_measurements):
            # Every uplink of the batch is new (the usual case): no look-ups per row.
            measurements = [row for readings in rows.uplink_measurements.values() for row in readings]
        else:
            measurements = [row for key in inserted for row in rows.uplink_measurements.get(key, ())]
        measurements += [row for key in new_events for row in rows.event_measurements.get(key, ())]
        if mode == "postgresql":
            _insert_measurements_and_rollups(conn, measurements)
            _rollup_gateways(conn, fresh)
        else:
            # TimescaleDB keeps the rollups itself (continuous aggregates).
            _copy(conn, MEASUREMENT, measurements)
        _touch_gateways(conn, batch.gateways_seen)
        dead = write_dead_letters(conn, batch.dead_letters)
        if measurements:
            # Wakes the hazard evaluator (``ioc operations run``); sent by PostgreSQL on commit only, once.
            notify(conn, READINGS)
    return WriteResult(
        uplinks=len(inserted),
        duplicates=len(rows.uplinks) - len(inserted),
        measurements=len(measurements),
        device_events=len(new_events),
        dead_letters=dead,
        failed=frozenset(d.fingerprint for d in batch.dead_letters),
        stored=tuple(inserted),
        readings=rows.uplink_measurements,
    )


def _pin_untrusted_times(conn: Connection, batch: Batch) -> _Written:
    """Rows whose event time was not trusted carry the receive time, which differs on every delivery; the
    unique keys hold the time. So such a row takes the time of its copy already stored (or earlier in this
    batch), and a redelivery stays a duplicate. Rare rows: one look-up per batch that has any.

    Returns the batch's rows with those times (copies where a time changed; the batch stays as it was)."""
    uplinks: Sequence[UplinkRow] = batch.uplinks
    uplink_measurements: Mapping[uuid.UUID, Sequence[MeasurementRow]] = batch.uplink_measurements
    untrusted = [row for row in uplinks if row[UPLINK_EVENT_TIME] is not None]
    if untrusted:
        stored: dict[tuple[int, uuid.UUID], datetime] = dict(((d, q), t) for d, q, t in conn.execute(
            """SELECT u.device_id, u.deduplication_id, u.time FROM uplinks u
               JOIN unnest(%s::int4[], %s::uuid[]) AS k(d, q) ON u.device_id = k.d AND u.deduplication_id = k.q""",
            ([r[UPLINK_DEVICE_ID] for r in untrusted], [r[UPLINK_DEDUPLICATION_ID] for r in untrusted])).fetchall())
        pinned: list[UplinkRow] = []
        moved: dict[uuid.UUID, Sequence[MeasurementRow]] = {}
        for row in uplinks:
            if row[UPLINK_EVENT_TIME] is not None:
                dedup = row[UPLINK_DEDUPLICATION_ID]
                when = stored.setdefault((row[UPLINK_DEVICE_ID], dedup), row[UPLINK_TIME])
                if when != row[UPLINK_TIME]:
                    row = _with_time(row, UPLINK_TIME, when)
                    moved[dedup] = [_with_time(m, MEASUREMENT_TIME, when) for m in uplink_measurements.get(dedup, ())]
            pinned.append(row)
        uplinks = pinned
        if moved:
            uplink_measurements = {**uplink_measurements, **moved}
    events: Sequence[EventRow] = batch.events
    event_measurements: Mapping[uuid.UUID, Sequence[MeasurementRow]] = batch.event_measurements
    untrusted = [row for row in events if row[EVENT_EVENT_TIME] is not None]
    if untrusted:
        known: dict[tuple[int, uuid.UUID, str], datetime] = dict(((d, k, e), t) for d, k, e, t in conn.execute(
            """SELECT v.device_id, v.event_key, v.event_type, v.time FROM device_events v
               JOIN unnest(%s::int4[], %s::uuid[], %s::text[]) AS k(d, q, e)
                 ON v.device_id = k.d AND v.event_key = k.q AND v.event_type = k.e""",
            ([r[EVENT_DEVICE_ID] for r in untrusted], [r[EVENT_KEY] for r in untrusted],
             [r[EVENT_TYPE] for r in untrusted])).fetchall())
        kept: list[EventRow] = []
        shifted: dict[uuid.UUID, Sequence[MeasurementRow]] = {}
        for row in events:
            if row[EVENT_EVENT_TIME] is not None:
                key = row[EVENT_KEY]
                when = known.setdefault((row[EVENT_DEVICE_ID], key, row[EVENT_TYPE]), row[EVENT_TIME])
                if when != row[EVENT_TIME]:
                    row = _with_time(row, EVENT_TIME, when)
                    shifted[key] = [_with_time(m, MEASUREMENT_TIME, when) for m in event_measurements.get(key, ())]
            kept.append(row)
        events = kept
        if shifted:
            event_measurements = {**event_measurements, **shifted}
    return _Written(uplinks, uplink_measurements, events, event_measurements)


def _with_time(row: tuple[Any, ...], position: int, when: datetime) -> tuple[Any, ...]:
    return (*row[:position], when, *row[position + 1:])


def _insert_uplinks(conn: Connection, uplinks: Sequence[UplinkRow]) -> tuple[list[uuid.UUID], list[UplinkRow]]:
    """Store the batch's uplinks; returns the ids stored (new or re-decoded) and the rows that are new."""
    if not uplinks:
        return [], []
    device, dedup, time = UPLINK_DEVICE_ID, UPLINK_DEDUPLICATION_ID, UPLINK_TIME
    # Repeats inside one batch (a duplicate delivery right behind the first) would make the upsert
    # touch a row twice, which PostgreSQL refuses.
    # Keyed by the UUID's int: hashing a UUID object runs Python code, an int's does not.
    unique = list({(row[device], row[dedup].int, row[time]): row for row in uplinks}.values())
    # Almost every batch is new data: COPY straight into the table. A repeat delivery makes the COPY
    # fail on the unique key; then the savepoint is rolled back and the idempotent path below runs.
    if copy_new_rows(conn, UPLINK.table, UPLINK.columns, UPLINK.types, unique):
        return [row[dedup] for row in unique], unique
    _copy(conn, UPLINK, unique, "stage_uplinks")
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
    return [r[0] for r in rows], [row for row in unique if row[dedup] in new]


def _insert_events(conn: Connection, events: Sequence[EventRow]) -> list[uuid.UUID]:
    if not events:
        return []
    unique = list({(row[EVENT_DEVICE_ID], row[EVENT_KEY], row[EVENT_TYPE], row[EVENT_TIME]): row
                   for row in events}.values())
    _copy(conn, DEVICE_EVENT, unique, "stage_events")
    rows = conn.execute(
        """INSERT INTO device_events SELECT * FROM stage_events
           ON CONFLICT (device_id, event_key, event_type, time) DO NOTHING
           RETURNING event_key"""
    ).fetchall()
    return [r[0] for r in rows]


def _insert_measurements_and_rollups(conn: Connection, measurements: list[MeasurementRow]) -> None:
    """Plain-PostgreSQL rollups, kept exact in the batch's transaction.

    The batch goes to a staging table once; PostgreSQL then inserts it and aggregates it into both rollup
    tables. Doing the aggregation in SQL leaves the worker's single Python core for decoding, while the
    database runs on another. Hours are cut in UTC, as TimescaleDB's time_bucket does.
    """
    if not measurements:
        return
    _copy(conn, MEASUREMENT, measurements, "stage_measurements")
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


def _rollup_gateways(conn: Connection, uplinks: list[UplinkRow]) -> None:
    """Plain-PostgreSQL rollup_gateway_hourly: new uplinks counted by UTC hour, gateway and zone."""
    if not uplinks:
        return
    groups: dict[tuple[datetime, int | None, int | None], list[Any]] = {}
    time, gateway, zone, rssi_at, snr_at = UPLINK_TIME, UPLINK_GATEWAY_ID, UPLINK_ZONE_ID, UPLINK_RSSI, UPLINK_SNR
    for row in uplinks:
        key = (row[time].astimezone(UTC).replace(minute=0, second=0, microsecond=0), row[gateway], row[zone])
        rssi, snr = row[rssi_at], row[snr_at]
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


def _touch_gateways(conn: Connection, seen: Mapping[int, datetime]) -> None:
    if not seen:
        return
    with conn.cursor() as cur:
        cur.execute(
            """UPDATE gateways g SET last_seen_at = GREATEST(g.last_seen_at, v.seen)
               FROM unnest(%s::int4[], %s::timestamptz[]) AS v(id, seen) WHERE g.id = v.id""",
            (list(seen.keys()), list(seen.values())),
        )
