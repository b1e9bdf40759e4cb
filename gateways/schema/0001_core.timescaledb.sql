-- TimescaleDB mode (the extension is installed by the migration runner before this file runs).
-- Follows the TimescaleDB 2.13+ documentation: create_hypertable with by_range, columnstore compression
-- via ALTER TABLE ... SET (timescaledb.compress ...), add_compression_policy and add_retention_policy.

SELECT create_hypertable('uplinks', by_range('time', INTERVAL '1 day'), if_not_exists => TRUE);
SELECT create_hypertable('measurements', by_range('time', INTERVAL '1 day'), if_not_exists => TRUE);
SELECT create_hypertable('device_events', by_range('time', INTERVAL '7 days'), if_not_exists => TRUE);
SELECT create_hypertable('ingest_stats', by_range('time', INTERVAL '7 days'), if_not_exists => TRUE);

ALTER TABLE uplinks SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'device_id',
    timescaledb.compress_orderby = 'time DESC'
);
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
SELECT add_compression_policy('uplinks', INTERVAL '7 days', if_not_exists => TRUE);
SELECT add_compression_policy('measurements', INTERVAL '7 days', if_not_exists => TRUE);
SELECT add_compression_policy('device_events', INTERVAL '7 days', if_not_exists => TRUE);

-- Raw data for two years, pipeline statistics for 90 days; the hourly rollups (0002) are kept longer.
SELECT add_retention_policy('uplinks', INTERVAL '730 days', if_not_exists => TRUE);
SELECT add_retention_policy('measurements', INTERVAL '730 days', if_not_exists => TRUE);
SELECT add_retention_policy('device_events', INTERVAL '730 days', if_not_exists => TRUE);
SELECT add_retention_policy('ingest_stats', INTERVAL '90 days', if_not_exists => TRUE);
