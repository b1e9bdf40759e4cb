-- Plain PostgreSQL mode: hourly rollups are tables that the ingest worker updates in the same transaction
-- as the measurements it writes (see ingest/writer.py), so they are always exact. Only good-quality
-- values count. Same names and columns as the TimescaleDB continuous aggregates, so queries are shared.

CREATE TABLE rollup_device_hourly (
    bucket    timestamptz NOT NULL,
    device_id integer NOT NULL,
    metric_id smallint NOT NULL,
    n         bigint NOT NULL,
    total     double precision NOT NULL,
    minimum   double precision NOT NULL,
    maximum   double precision NOT NULL,
    PRIMARY KEY (device_id, metric_id, bucket)
);

CREATE TABLE rollup_zone_hourly (
    bucket    timestamptz NOT NULL,
    zone_id   integer,
    metric_id smallint NOT NULL,
    n         bigint NOT NULL,
    total     double precision NOT NULL,
    minimum   double precision NOT NULL,
    maximum   double precision NOT NULL,
    UNIQUE NULLS NOT DISTINCT (zone_id, metric_id, bucket)
);
CREATE INDEX rollup_zone_hourly_bucket ON rollup_zone_hourly (bucket);
