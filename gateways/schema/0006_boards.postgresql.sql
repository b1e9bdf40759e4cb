-- City-wide time ranges (uplinks per gateway, coverage) need a time index. TimescaleDB's hypertables have
-- one per chunk already; on plain PostgreSQL a BRIN index does it for almost nothing on the ingest path,
-- because rows arrive in time order.
CREATE INDEX uplinks_time_brin ON uplinks USING brin (time) WITH (pages_per_range = 32);
CREATE INDEX measurements_time_brin ON measurements USING brin (time) WITH (pages_per_range = 32);

-- Hourly rollups for the Network and Pipeline boards' long ranges, with the same names, columns and types as
-- the continuous aggregates of 0006_boards.timescaledb.sql. ingest/writer.py adds each batch's new uplinks
-- (by the hour, gateway and zone they were heard in); ingest/stats.py adds each stats row of a worker.
CREATE TABLE rollup_gateway_hourly (
    bucket     timestamptz NOT NULL,
    gateway_id integer,
    zone_id    integer,
    n          bigint NOT NULL,
    rssi_total bigint,
    rssi_n     bigint NOT NULL,
    rssi_min   smallint,
    snr_total  double precision,
    snr_n      bigint NOT NULL,
    snr_min    real,
    UNIQUE NULLS NOT DISTINCT (gateway_id, zone_id, bucket)
);
CREATE INDEX rollup_gateway_hourly_bucket ON rollup_gateway_hourly (bucket);

CREATE TABLE rollup_ingest_hourly (
    bucket         timestamptz NOT NULL,
    worker         text NOT NULL,
    seconds        double precision NOT NULL,
    received       numeric NOT NULL,
    uplinks        numeric NOT NULL,
    duplicates     numeric NOT NULL,
    measurements   numeric NOT NULL,
    device_events  numeric NOT NULL,
    dead_letters   numeric NOT NULL,
    batches        bigint NOT NULL,
    batch_messages double precision,
    batch_ms       double precision,
    lag_ms_p50     real,
    lag_ms_p99     real,
    retries        bigint NOT NULL,
    PRIMARY KEY (worker, bucket)
);
CREATE INDEX rollup_ingest_hourly_bucket ON rollup_ingest_hourly (bucket);

-- A database upgraded to this release already holds uplinks and worker stats: roll them up once, as the
-- continuous aggregates of TimescaleDB mode do over existing data, so long ranges show the past too.
INSERT INTO rollup_gateway_hourly
SELECT date_trunc('hour', time, 'UTC'), gateway_id, zone_id, count(*), sum(rssi), count(rssi), min(rssi),
       sum(snr::double precision), count(snr), min(snr)
FROM uplinks GROUP BY 1, 2, 3;

INSERT INTO rollup_ingest_hourly
SELECT date_trunc('hour', time, 'UTC'), worker, sum(interval_s::double precision), sum(received), sum(uplinks),
       sum(duplicates), sum(measurements), sum(device_events), sum(dead_letters), sum(batches),
       sum(batch_size_avg::double precision * batches), sum(batch_ms_avg::double precision * batches),
       max(lag_ms_p50), max(lag_ms_p99), sum(retries)
FROM ingest_stats GROUP BY 1, 2;

-- The Zone board reads a month of hourly rows for every device of a kind in a district. Rows of one device
-- are spread over the whole table (each hour's rows are written together), so fetching them from the heap
-- costs a page per row: 300 ms for 44 stations. A primary key that carries the values answers the same
-- query from the index alone (40 ms). It replaces the plain key rather than adding an index, so the ingest
-- still maintains one index on this table.
ALTER TABLE rollup_device_hourly DROP CONSTRAINT rollup_device_hourly_pkey;
ALTER TABLE rollup_device_hourly ADD PRIMARY KEY (device_id, metric_id, bucket) INCLUDE (n, total, minimum, maximum);

-- The Pipeline board's "now" figures read the last five minutes of every worker.
CREATE INDEX ingest_stats_time ON ingest_stats (time);
