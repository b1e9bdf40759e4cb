-- TimescaleDB mode: the Network and Pipeline boards' hourly rollups as continuous aggregates over the uplinks
-- and ingest_stats hypertables, with the names, columns, order and types of the plain tables in
-- 0006_boards.postgresql.sql, so the boards' SQL is the same in both modes. Written to the same documents
-- and rules as 0002_rollups.timescaledb.sql (see its comments): the documented CREATE MATERIALIZED VIEW
-- ... WITH (timescaledb.continuous) form, GROUP BY repeating time_bucket, WITH NO DATA because this runs
-- statement by statement in autocommit, real-time aggregation switched on explicitly (off by default since
-- 2.13), a refresh window reaching back to just short of the raw data's retention so late rows are counted,
-- and retention beyond that window.
--
-- Types: count(*) and count(x) are bigint, sum(smallint) and sum(integer) are bigint, sum(real) (summed as double precision
-- here to match the plain table), min(smallint) smallint, min(real) real; sum(bigint) is numeric and
-- sum(real) of ingest_stats.interval_s is cast to double precision (casts inside an aggregate's argument
-- are plain expressions, allowed in continuous aggregates). max(real) is real.
CREATE MATERIALIZED VIEW IF NOT EXISTS rollup_gateway_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
       gateway_id,
       zone_id,
       count(*)                      AS n,
       sum(rssi)                     AS rssi_total,
       count(rssi)                   AS rssi_n,
       min(rssi)                     AS rssi_min,
       sum(snr::double precision)    AS snr_total,
       count(snr)                    AS snr_n,
       min(snr)                      AS snr_min
FROM uplinks
GROUP BY time_bucket(INTERVAL '1 hour', time), gateway_id, zone_id
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS rollup_ingest_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', time)                      AS bucket,
       worker,
       sum(interval_s::double precision)                         AS seconds,
       sum(received)                                             AS received,
       sum(uplinks)                                              AS uplinks,
       sum(duplicates)                                           AS duplicates,
       sum(measurements)                                         AS measurements,
       sum(device_events)                                        AS device_events,
       sum(dead_letters)                                         AS dead_letters,
       sum(batches)                                              AS batches,
       sum(batch_size_avg::double precision * batches)           AS batch_messages,
       sum(batch_ms_avg::double precision * batches)             AS batch_ms,
       max(lag_ms_p50)                                           AS lag_ms_p50,
       max(lag_ms_p99)                                           AS lag_ms_p99,
       sum(retries)                                              AS retries
FROM ingest_stats
GROUP BY time_bucket(INTERVAL '1 hour', time), worker
WITH NO DATA;

SELECT add_continuous_aggregate_policy('rollup_gateway_hourly',
    start_offset => INTERVAL '720 days',
    end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '15 minutes',
    if_not_exists => TRUE);
-- ingest_stats is kept 90 days (0001_core.timescaledb.sql): the window stops short of that.
SELECT add_continuous_aggregate_policy('rollup_ingest_hourly',
    start_offset => INTERVAL '80 days',
    end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '15 minutes',
    if_not_exists => TRUE);

SELECT add_retention_policy('rollup_gateway_hourly', INTERVAL '1825 days', if_not_exists => TRUE);
SELECT add_retention_policy('rollup_ingest_hourly', INTERVAL '730 days', if_not_exists => TRUE);
