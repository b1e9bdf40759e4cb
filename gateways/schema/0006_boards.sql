-- What Grafana's boards and alert rules read besides the readings: each kind's reporting interval (mirrored
-- from ioc_core.kinds at every migrate, like the metrics table) and alert thresholds per kind or per device.

CREATE TABLE device_kinds (
    kind           text PRIMARY KEY,
    title          text NOT NULL,
    interval_s     integer NOT NULL CHECK (interval_s > 0),
    late_after     real NOT NULL,      -- late once silent for interval_s * late_after
    silent_after   real NOT NULL,      -- silent (and alerted) at interval_s * silent_after
    primary_metric text,               -- the value the city map colours this kind's devices by
    metrics        text[] NOT NULL DEFAULT '{}'   -- what such devices usually report (vocabulary names)
);

-- A device's own row wins over its kind's. alert_above / danger_above are the two levels Da Nang's flood
-- warnings use (báo động / nguy hiểm); sustained_s is how long a mean must stay above the level (PM2.5).
CREATE TABLE alert_thresholds (
    id           serial PRIMARY KEY,
    metric       text NOT NULL,
    kind         text,
    device_id    integer REFERENCES devices (id) ON DELETE CASCADE,
    alert_above  double precision,
    danger_above double precision CHECK (danger_above IS NULL OR alert_above IS NULL OR danger_above >= alert_above),
    sustained_s  integer NOT NULL DEFAULT 0 CHECK (sustained_s >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind IS NULL) <> (device_id IS NULL)),
    UNIQUE NULLS NOT DISTINCT (metric, kind, device_id)
);

-- Defaults an operator changes with `ioc alerts thresholds set`. Water level: metres above the station datum,
-- meant to be replaced by each station's own levels. Flood depth on streets: 0.2 m stops motorbikes, 0.5 m
-- cars. PM2.5: QCVN 05:2023/BTNMT's 24-hour limit of 50 µg/m³, held for an hour; 150 is "very unhealthy".
INSERT INTO alert_thresholds (metric, kind, alert_above, danger_above, sustained_s) VALUES
    ('water_level', 'water_level', 1.5, 2.5, 0),
    ('flood_depth', 'flood_depth', 0.2, 0.5, 0),
    ('pm2_5', 'air_quality', 50, 150, 3600);

-- The pipeline board and the "dead letters rising" rule count recent dead letters, resolved or not.
CREATE INDEX dead_letters_received ON dead_letters (received_at);

-- PostgreSQL's JIT compiles a plan whose estimated cost is high, and the boards' and alert rules' queries
-- (a lateral look-up per device across 5,000 devices) look costly while running in milliseconds: compiling
-- took 0.5 s of the PM2.5 rule's 0.57 s. The API already turns JIT off on its connections; Grafana's
-- connections get it from the database. Needs the database's owner; without that, say so and go on
-- (docs/grafana.md shows the per-role setting).
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET jit = off', current_database());
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'could not turn JIT off for database %: run ALTER ROLE <grafana role> SET jit = off', current_database();
END
$$;
