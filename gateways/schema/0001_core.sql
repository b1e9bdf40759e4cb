-- Core tables of the IOC platform. Runs on plain PostgreSQL 15+; 0001_core.timescaledb.sql adds the
-- TimescaleDB features when the extension is present.

CREATE TABLE platform_info (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- Districts and wards. A boundary change adds a new row with a new valid_from; readings keep the zone_id
-- they were taken in, so history is never redrawn.
CREATE TABLE zones (
    id          serial PRIMARY KEY,
    code        text NOT NULL,
    name        text NOT NULL,
    level       text NOT NULL CHECK (level IN ('city', 'district', 'ward')),
    parent_id   integer REFERENCES zones (id),
    boundary    jsonb NOT NULL,
    approximate boolean NOT NULL DEFAULT false,
    valid_from  timestamptz NOT NULL DEFAULT '-infinity',
    valid_to    timestamptz,
    UNIQUE (code, valid_from)
);

-- One row per outer ring of a zone's (multi)polygon, for point-in-polygon tests without PostGIS.
CREATE TABLE zone_rings (
    zone_id integer NOT NULL REFERENCES zones (id) ON DELETE CASCADE,
    ring    polygon NOT NULL
);
CREATE INDEX zone_rings_zone ON zone_rings (zone_id);

CREATE TABLE metrics (
    id          smallint PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    unit        text NOT NULL,
    minimum     double precision NOT NULL,
    maximum     double precision NOT NULL,
    description text NOT NULL DEFAULT ''
);

CREATE TABLE devices (
    id                  serial PRIMARY KEY,
    dev_eui             text NOT NULL UNIQUE CHECK (dev_eui ~ '^[0-9a-f]{16}$'),
    name                text NOT NULL,
    status              text NOT NULL DEFAULT 'registered'
                        CHECK (status IN ('registered', 'unregistered', 'decommissioned')),
    kind                text,
    model               text,
    codec_id            text,
    latitude            double precision,
    longitude           double precision,
    zone_id             integer REFERENCES zones (id),
    application_id      text,
    application_name    text,
    device_profile_id   text,
    device_profile_name text,
    tags                jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- Which codec a ChirpStack device profile's devices use, for devices the registry does not know yet.
CREATE TABLE device_profile_codecs (
    device_profile_id text PRIMARY KEY,
    codec_id          text NOT NULL
);

CREATE TABLE gateways (
    id            serial PRIMARY KEY,
    gateway_eui   text NOT NULL UNIQUE,
    name          text,
    latitude      double precision,
    longitude     double precision,
    altitude      double precision,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz
);

-- One row per LoRaWAN frame after ChirpStack's de-duplication. The unique key holds time because a
-- hypertable's unique keys must (an event's time never changes), and device_id so that TimescaleDB can
-- narrow the conflict check of a late row to one device's compressed segments.
CREATE TABLE uplinks (
    time             timestamptz NOT NULL,
    received_at      timestamptz NOT NULL,
    device_id        integer NOT NULL,
    deduplication_id uuid NOT NULL,
    zone_id          integer,
    dev_addr         text,
    f_cnt            bigint NOT NULL,
    f_port           smallint NOT NULL,
    dr               smallint NOT NULL,
    confirmed        boolean NOT NULL,
    adr              boolean NOT NULL,
    frequency        bigint,
    spreading_factor smallint,
    rssi             smallint,
    snr              real,
    gateway_count    smallint NOT NULL,
    gateway_id       integer,
    payload          bytea NOT NULL,
    codec_id         text,
    decode_status    text NOT NULL
                     CHECK (decode_status IN ('ok', 'warning', 'error', 'no_codec', 'empty', 'encrypted')),
    UNIQUE (device_id, deduplication_id, time)
);
CREATE INDEX uplinks_device_time ON uplinks (device_id, time DESC);

-- Narrow: one value per metric per uplink. quality: 0 good, 1 out of the metric's range, 2 not finite.
CREATE TABLE measurements (
    time      timestamptz NOT NULL,
    device_id integer NOT NULL,
    zone_id   integer,
    metric_id smallint NOT NULL,
    value     double precision NOT NULL,
    quality   smallint NOT NULL DEFAULT 0
);
CREATE INDEX measurements_device_metric_time ON measurements (device_id, metric_id, time DESC);
-- No per-zone index on the raw table: zone views read rollup_zone_hourly, and every index costs ingest.

-- join, status, ack, txack, log, location. event_key is the deduplication id where ChirpStack gives one,
-- otherwise a hash of the message, so a redelivered event is stored once.
CREATE TABLE device_events (
    time                  timestamptz NOT NULL,
    received_at           timestamptz NOT NULL,
    device_id             integer NOT NULL,
    event_type            text NOT NULL
                          CHECK (event_type IN ('join', 'status', 'ack', 'txack', 'log', 'location')),
    event_key             uuid NOT NULL,
    battery_level         real,
    margin                smallint,
    external_power_source boolean,
    level                 text,
    code                  text,
    details               jsonb NOT NULL DEFAULT '{}',
    UNIQUE (device_id, event_key, event_type, time)
);
CREATE INDEX device_events_device_time ON device_events (device_id, time DESC);

-- Everything the ingest could not process, with the raw bytes, so it can be replayed after a fix.
CREATE TABLE dead_letters (
    id               bigserial PRIMARY KEY,
    fingerprint      uuid NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now(),
    topic            text NOT NULL,
    payload          bytea NOT NULL,
    stage            text NOT NULL CHECK (stage IN ('parse', 'device', 'decode', 'normalise', 'store')),
    reason           text NOT NULL,
    dev_eui          text,
    deduplication_id uuid,
    replay_count     integer NOT NULL DEFAULT 0,
    last_replayed_at timestamptz,
    resolved_at      timestamptz,
    UNIQUE (fingerprint, stage)
);
CREATE INDEX dead_letters_open ON dead_letters (received_at) WHERE resolved_at IS NULL;

-- Progress of every ingest worker, one row per stats interval; the pipeline board reads it.
CREATE TABLE ingest_stats (
    time             timestamptz NOT NULL,
    worker           text NOT NULL,
    interval_s       real NOT NULL,
    received         bigint NOT NULL,
    uplinks          bigint NOT NULL,
    duplicates       bigint NOT NULL,
    measurements     bigint NOT NULL,
    device_events    bigint NOT NULL,
    dead_letters     bigint NOT NULL,
    batches          integer NOT NULL,
    batch_size_avg   real,
    batch_ms_avg     real,
    lag_ms_p50       real,            -- commit time minus the event's time (ChirpStack's clock)
    lag_ms_p99       real,
    latency_ms_p50   real,            -- commit time minus the time the message reached the worker
    latency_ms_p99   real,
    retries          integer NOT NULL DEFAULT 0,
    PRIMARY KEY (worker, time)
);
