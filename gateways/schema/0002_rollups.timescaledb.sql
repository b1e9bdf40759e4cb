-- TimescaleDB mode: the hourly rollups are continuous aggregates with real-time aggregation
-- (materialized_only = false; since 2.13 the default is true), so they answer like the plain tables do.

CREATE MATERIALIZED VIEW rollup_device_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
       device_id,
       metric_id,
       count(*)   AS n,
       sum(value) AS total,
       min(value) AS minimum,
       max(value) AS maximum
FROM measurements
WHERE quality = 0
GROUP BY time_bucket(INTERVAL '1 hour', time), device_id, metric_id
WITH NO DATA;

CREATE MATERIALIZED VIEW rollup_zone_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
       zone_id,
       metric_id,
       count(*)   AS n,
       sum(value) AS total,
       min(value) AS minimum,
       max(value) AS maximum
FROM measurements
WHERE quality = 0
GROUP BY time_bucket(INTERVAL '1 hour', time), zone_id, metric_id
WITH NO DATA;

SELECT add_continuous_aggregate_policy('rollup_device_hourly',
    start_offset => INTERVAL '3 days',
    end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '15 minutes',
    if_not_exists => TRUE);
SELECT add_continuous_aggregate_policy('rollup_zone_hourly',
    start_offset => INTERVAL '3 days',
    end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '15 minutes',
    if_not_exists => TRUE);

-- Rollups outlive the raw data: five years.
SELECT add_retention_policy('rollup_device_hourly', INTERVAL '1825 days', if_not_exists => TRUE);
SELECT add_retention_policy('rollup_zone_hourly', INTERVAL '1825 days', if_not_exists => TRUE);
