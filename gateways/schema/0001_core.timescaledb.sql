-- TimescaleDB mode (the extension is installed by the migration runner before this file runs).
-- gateways/migrations.py runs this file statement by statement in autocommit, splitting on ";" at line
-- ends: keep one statement per ";"-terminated block and never end a line of code with "; -- comment".
--
-- Version floor: TimescaleDB 2.13. Every call below is written as the TimescaleDB documentation gives it:
-- * create_hypertable(relation, by_range(...)): the generalized hypertable API "introduced in TimescaleDB
--   v2.13" (docs.tigerdata.com/api/latest/hypertable/create_hypertable/). The old signature
--   create_hypertable('t', 'time', chunk_time_interval => ...) still runs but is documented as
--   "Deprecated 2.13.0. Use the new interface" (.../hypertable/create_hypertable_old/), so it is not used.
--   Older servers fail here with "function by_range(...) does not exist".
-- * Compression uses the compression API (ALTER TABLE ... SET (timescaledb.compress, ...),
--   add_compression_policy). Since 2.18 the docs call it the "Old API" and name the columnstore API
--   (timescaledb.enable_columnstore, CALL add_columnstore_policy(...)) as its successor, but also say
--   "compression APIs are still supported, you do not need to migrate to the hypercore APIs"
--   (docs.tigerdata.com/use-timescale/latest/compression/compression-policy/). The columnstore API only
--   exists from 2.18, so the compression API is the one spelling that works on every version from 2.13
--   to the latest.
-- * Compression, policies and continuous aggregates are Community (TSL-licensed) features; an
--   Apache-only build (timescaledb.license = 'apache') fails at the first ALTER TABLE ... compress.

-- The tables are created empty by 0001_core.sql in the same migration. migrate_data => TRUE changes
-- nothing then; it only matters if this file is re-run after rows were written, because with the
-- default (FALSE) "non-empty tables generate an error" (create_hypertable, Arguments). Every UNIQUE and
-- PRIMARY KEY constraint of these tables contains "time", as "UNIQUE and PRIMARY constraints must
-- include the partitioning key" requires (same page; docs.tigerdata.com/use-timescale/latest/hypertables/
-- hypertables-and-unique-indexes/). None of them has a foreign key.
SELECT create_hypertable('uplinks', by_range('time', INTERVAL '1 day'),
    if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('measurements', by_range('time', INTERVAL '1 day'),
    if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('device_events', by_range('time', INTERVAL '7 days'),
    if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('ingest_stats', by_range('time', INTERVAL '7 days'),
    if_not_exists => TRUE, migrate_data => TRUE);

-- Compression (docs.tigerdata.com/api/latest/compression/alter_table_compression/). Segmenting by
-- device_id matches how the data is read (one device, a time range).
--
-- uplinks has UNIQUE (deduplication_id, time) and device_events UNIQUE (event_key, event_type, time); the
-- ingest writes them with INSERT ... ON CONFLICT (...) DO UPDATE / DO NOTHING. Since TimescaleDB 2.11 that
-- works on compressed chunks and the constraints stay enforced: "a small amount of data is decompressed to
-- allow a speculative insertion" (docs.tigerdata.com/use-timescale/latest/compression/
-- modify-compressed-data/). Because deduplication_id / event_key / event_type are neither segmentby nor
-- orderby columns, enabling compression prints the expected
--   WARNING: column "deduplication_id" should be used for segmenting or ordering
-- (a warning from 2.12 on; releases before unique constraints on compressed chunks were supported
-- rejected it as an error). It is a performance note, not a correctness gap:
-- segmenting by a per-message UUID would leave one row per segment. The cost is on late rows only: for a
-- row landing in an already compressed chunk, TimescaleDB can narrow the batches it must decompress only
-- by the unique key's columns, which here is the time range (orderby min/max), so every device's batch
-- around that time is checked. From 2.14 a single statement that decompresses more than
-- timescaledb.max_tuples_decompressed_per_dml_transaction tuples (default 100000) fails with "tuple
-- decompression limit exceeded by operation" (docs.tigerdata.com/use-timescale/latest/hypercore/
-- troubleshooting/). Compressing only after 7 days keeps late uplinks out of compressed chunks in the
-- normal case. Beyond that, either raise that limit on the ingest's connections, or make device_id part
-- of these unique keys (a schema change in 0001_core.sql and the writer's ON CONFLICT targets) so that
-- the segmentby equality narrows the check to the one device's batches.
ALTER TABLE uplinks SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'device_id',
    timescaledb.compress_orderby = 'time DESC'
);
-- measurements has no unique constraint, so inserting late rows into a compressed chunk decompresses
-- nothing (supported since 2.3, same page).
ALTER TABLE measurements SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'device_id, metric_id',
    timescaledb.compress_orderby = 'time DESC'
);
ALTER TABLE device_events SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'device_id',
    timescaledb.compress_orderby = 'time DESC'
);

-- Late uplinks (a gateway back from an outage) mostly arrive within days; compress after a week.
-- (docs.tigerdata.com/api/latest/compression/add_compression_policy/: compress_after as INTERVAL for a
-- timestamptz time column; if_not_exists => TRUE warns instead of failing when the policy exists.)
SELECT add_compression_policy('uplinks', INTERVAL '7 days', if_not_exists => TRUE);
SELECT add_compression_policy('measurements', INTERVAL '7 days', if_not_exists => TRUE);
SELECT add_compression_policy('device_events', INTERVAL '7 days', if_not_exists => TRUE);

-- Raw data for two years, pipeline statistics for 90 days; the hourly rollups (0002) are kept longer.
-- (docs.tigerdata.com/api/latest/data-retention/add_retention_policy/; one retention policy per
-- hypertable.) 0002's refresh policy for the rollups must never reach back to data these policies drop,
-- or a refresh would delete the rollups of the dropped range: keep its start_offset below 730 days
-- (docs.tigerdata.com/use-timescale/latest/data-retention/data-retention-with-continuous-aggregates/).
SELECT add_retention_policy('uplinks', INTERVAL '730 days', if_not_exists => TRUE);
SELECT add_retention_policy('measurements', INTERVAL '730 days', if_not_exists => TRUE);
SELECT add_retention_policy('device_events', INTERVAL '730 days', if_not_exists => TRUE);
SELECT add_retention_policy('ingest_stats', INTERVAL '90 days', if_not_exists => TRUE);
