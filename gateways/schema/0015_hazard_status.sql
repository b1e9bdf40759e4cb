-- Hazard status per zone (issue 13): which measurements tell a hazard, the watch level below alert and danger,
-- and each zone's current status with the history of its changes. The rule itself (worst-of, freshness) is
-- operations/status.py; the evaluator (operations/evaluator.py) writes these tables, the API and boards read them.

-- A watch level below alert and danger: FIWARE FloodMonitoring has only alert and danger; for river stations
-- watch is Vietnam's flood alarm level 1 (BĐ1, Decision 05/2020/QĐ-TTg), alert and danger BĐ2 and BĐ3. The
-- defaults below are placeholders an operator replaces per station (`ioc dashboards thresholds`).
-- No CHECK against alert_above: setting a station's alert and danger levels must not fail on a default watch
-- level above them; the evaluator ignores a watch level that is not below alert.
ALTER TABLE alert_thresholds ADD COLUMN watch_above double precision;

UPDATE alert_thresholds SET watch_above = 1.0 WHERE metric = 'water_level' AND kind = 'water_level';
UPDATE alert_thresholds SET watch_above = 0.1 WHERE metric = 'flood_depth' AND kind = 'flood_depth';
UPDATE alert_thresholds SET watch_above = 35 WHERE metric = 'pm2_5' AND kind = 'air_quality';

-- Rain over a window, in mm: 'rainfall_1h' and 'rainfall_3h' are sums of the gauges' 'rainfall' readings. No
-- national 1-hour threshold exists; NCHMF warns of intense rain at 70+ mm in 3 h, and Da Nang's wards pond at
-- 25-50 mm in 3 h. Placeholders to be set by the city (docs/design/operations-research.md, 7.3).
INSERT INTO alert_thresholds (metric, kind, watch_above, alert_above, danger_above, sustained_s) VALUES
    ('rainfall_1h', 'rain_gauge', 15, 30, 50, 0),
    ('rainfall_3h', 'rain_gauge', 25, 50, 100, 0)
ON CONFLICT DO NOTHING;

-- What tells each hazard: a metric, how its readings are combined over a window, and the alert_thresholds
-- metric whose levels apply. 'latest' takes the newest reading within the window; 'sum' and 'mean' combine the
-- window's readings. A station counts when its device is reporting (device_health) and it measured within
-- the window.
CREATE TABLE hazards (
    code     text PRIMARY KEY CHECK (code ~ '^[a-z][a-z0-9_]*$'),
    name_vi  text NOT NULL,
    name_en  text NOT NULL
);

CREATE TABLE hazard_measures (
    hazard           text NOT NULL REFERENCES hazards (code) ON DELETE CASCADE,
    metric           text NOT NULL,
    aggregate        text NOT NULL CHECK (aggregate IN ('latest', 'sum', 'mean')),
    window_s         integer NOT NULL CHECK (window_s > 0),
    threshold_metric text NOT NULL,
    PRIMARY KEY (hazard, threshold_metric)
);

INSERT INTO hazards (code, name_vi, name_en) VALUES
    ('flood', 'Ngập lụt', 'Flood'),
    ('heavy_rain', 'Mưa lớn', 'Heavy rain'),
    ('air_quality', 'Chất lượng không khí', 'Air quality');

INSERT INTO hazard_measures (hazard, metric, aggregate, window_s, threshold_metric) VALUES
    ('flood', 'water_level', 'latest', 3600, 'water_level'),
    ('flood', 'flood_depth', 'latest', 3600, 'flood_depth'),
    ('heavy_rain', 'rainfall', 'sum', 3600, 'rainfall_1h'),
    ('heavy_rain', 'rainfall', 'sum', 10800, 'rainfall_3h'),
    ('air_quality', 'pm2_5', 'mean', 3600, 'pm2_5');

-- The current status of each zone and hazard, by zone code (a zone's code outlives its boundary versions).
CREATE TABLE zone_hazard_status (
    zone_code    text NOT NULL,
    hazard       text NOT NULL REFERENCES hazards (code) ON DELETE CASCADE,
    status       text NOT NULL CHECK (status IN ('normal', 'watch', 'alert', 'danger', 'unknown')),
    since        timestamptz NOT NULL,
    evaluated_at timestamptz NOT NULL,
    reason       text NOT NULL,
    evidence     jsonb NOT NULL DEFAULT '[]',
    PRIMARY KEY (zone_code, hazard)
);

-- Every change: when, from what, to what, and why (which stations, which values).
CREATE TABLE zone_hazard_changes (
    id          bigserial PRIMARY KEY,
    zone_code   text NOT NULL,
    hazard      text NOT NULL REFERENCES hazards (code) ON DELETE CASCADE,
    at          timestamptz NOT NULL,
    from_status text CHECK (from_status IN ('normal', 'watch', 'alert', 'danger', 'unknown')),
    to_status   text NOT NULL CHECK (to_status IN ('normal', 'watch', 'alert', 'danger', 'unknown')),
    reason      text NOT NULL,
    evidence    jsonb NOT NULL DEFAULT '[]'
);
CREATE INDEX zone_hazard_changes_zone ON zone_hazard_changes (zone_code, hazard, at DESC);
CREATE INDEX zone_hazard_changes_at ON zone_hazard_changes (at);
