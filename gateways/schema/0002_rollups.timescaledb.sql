-- TimescaleDB mode: the hourly rollups are continuous aggregates over the measurements hypertable, with
-- the same names, column names, column order and types as the plain tables of
-- 0002_rollups.postgresql.sql (bucket timestamptz, device_id integer / zone_id integer, metric_id
-- smallint, n bigint = count(*), total / minimum / maximum double precision = sum / min / max of a double
-- precision column), so the same SELECTs work in both modes. time_bucket on timestamptz aligns buckets
-- to whole hours in UTC (docs.tigerdata.com/api/latest/hyperfunctions/time_bucket/).
-- Runs statement by statement in autocommit (gateways/migrations.py). Only CREATE MATERIALIZED VIEW ...
-- WITH DATA is refused inside a transaction block (or a function, or a pipeline); WITH NO DATA, used
-- here on tables that are still empty, creates the view at once and leaves filling it to the policy.
--
-- The query follows the documented form (docs.tigerdata.com/api/latest/continuous-aggregates/
-- create_materialized_view/): SELECT <grouping_exprs>, <aggregate_functions> FROM <hypertable>
-- [WHERE ...] GROUP BY time_bucket(<const_value>, <partition_col_of_hypertable>), [grouping exprs].
-- WHERE is allowed; GROUP BY repeats the time_bucket expression as in that syntax (the alias also works,
-- as in the how-to examples). A NULL zone_id groups as one row per bucket and metric, like the plain
-- table's UNIQUE NULLS NOT DISTINCT.
--
-- Real-time aggregation (materialized_only = false) adds the rows newer than the last materialized
-- bucket at query time. Since TimescaleDB 2.13 the default is materialized_only = true ("In TimescaleDB
-- v2.13 and later, real-time aggregates are DISABLED by default", docs.tigerdata.com/use-timescale/
-- latest/continuous-aggregates/real-time-aggregates/), so it is set explicitly.
--
-- IF NOT EXISTS is PostgreSQL's CREATE MATERIALIZED VIEW syntax; TimescaleDB honours it for continuous
-- aggregates ("continuous aggregate ... already exists, skipping"), which keeps this file re-runnable
-- like the if_not_exists => TRUE calls below.
CREATE MATERIALIZED VIEW IF NOT EXISTS rollup_device_hourly
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

CREATE MATERIALIZED VIEW IF NOT EXISTS rollup_zone_hourly
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

-- Refresh policy (docs.tigerdata.com/api/latest/continuous-aggregates/add_continuous_aggregate_policy/).
-- Real-time aggregation does not cover late rows: "If you add new historical data to an
-- already-materialized bucket, it won't be reflected in a real-time aggregate. You should wait for the
-- next scheduled refresh" (real-time-aggregates page). Late rows are normal here (gateways back from an
-- outage, dead letters replayed after a codec fix, uplinks re-stored once their decode succeeds), and the
-- plain tables count them whenever they arrive. So the refresh window reaches back as far as raw data is
-- kept: a refresh recomputes only the buckets whose raw data changed since the last refresh
-- (docs.tigerdata.com/use-timescale/latest/continuous-aggregates/refresh-policies/), so a wide window
-- costs nothing when nothing old changed. It must stay short of the 730-day retention of measurements
-- (0001_core.timescaledb.sql): a refresh over dropped chunks deletes their rollups ("make sure that the
-- aggregate's refresh window doesn't overlap with any deleted data", docs.tigerdata.com/use-timescale/
-- latest/data-retention/data-retention-with-continuous-aggregates/). 720 days leaves a margin for chunk
-- boundaries. end_offset keeps the current, still-filling bucket out of the materialization, as the
-- refresh-policies page recommends; real-time aggregation serves it.
SELECT add_continuous_aggregate_policy('rollup_device_hourly',
    start_offset => INTERVAL '720 days',
    end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '15 minutes',
    if_not_exists => TRUE);
SELECT add_continuous_aggregate_policy('rollup_zone_hourly',
    start_offset => INTERVAL '720 days',
    end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '15 minutes',
    if_not_exists => TRUE);

-- Rollups outlive the raw data: five years. add_retention_policy accepts a continuous aggregate
-- ("Name of the hypertable or continuous aggregate", docs.tigerdata.com/api/latest/data-retention/
-- add_retention_policy/); 1825 days is beyond the refresh window, so the two policies never overlap.
SELECT add_retention_policy('rollup_device_hourly', INTERVAL '1825 days', if_not_exists => TRUE);
SELECT add_retention_policy('rollup_zone_hourly', INTERVAL '1825 days', if_not_exists => TRUE);
