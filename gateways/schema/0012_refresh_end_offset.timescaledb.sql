-- TimescaleDB mode: the hourly continuous aggregates are refreshed up to 5 minutes ago instead of an hour ago.
-- Runs statement by statement in autocommit (gateways/migrations.py); safe to run again.
--
-- Why: real-time aggregation (materialized_only = false) computes every bucket past the last materialised one
-- from the raw rows at each query. With end_offset = 1 hour (0002, 0006) a refresh at 13:59 materialises only
-- up to 12:00 (the window ends at 12:59 and only whole buckets are materialised), so until the next run each
-- read of the rollups aggregated up to two hours and a quarter of raw measurements: the API's city-wide
-- GET /zones took 122 ms p95 at 5,000 devices (78 ms when the fill happened to end just after a refresh; the
-- key values' part alone went from 21 ms to 4 ms once the last hour was materialised). With 5 minutes, the
-- last complete hour is materialised at the first run after it ends, and at most an hour and a quarter (the
-- open bucket plus the 15-minute schedule) is aggregated at read time.
--
-- The current bucket is never materialised whatever end_offset says (only buckets wholly inside the refresh
-- window are), so a short offset does not churn the open hour. Rows that arrive late for an hour already
-- materialised are recorded as invalidations and recomputed by the next run (its window still reaches back
-- 720 days, 80 for the workers' stats), as for any late row since 0002.
--
-- alter_job with the policy's own config keys keeps the job, its id and its schedule
-- (docs.tigerdata.com/api/latest/jobs-automation/alter_job/: "config: Job-specific configuration, passed to the
-- function when it runs"); the refresh policy reads start_offset and end_offset from it.
SELECT alter_job(j.job_id, config => jsonb_set(j.config, '{end_offset}', to_jsonb('00:05:00'::text)))
FROM timescaledb_information.jobs j
WHERE j.proc_name = 'policy_refresh_continuous_aggregate'
  AND j.hypertable_name IN ('rollup_device_hourly', 'rollup_zone_hourly', 'rollup_gateway_hourly',
                            'rollup_ingest_hourly');
