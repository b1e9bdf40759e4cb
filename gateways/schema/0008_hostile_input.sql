-- Malformed input never stops the ingest (issue 10, part 2; docs/ingest-hardening.md). Numbered 0008: 0007 is
-- the two-broker migration of part 1.

-- An event time outside the trusted window (more than IOC_INGEST_FUTURE_S ahead of the receive time) is not
-- used: the row's time is the receive time, and the time the event claimed is kept here. NULL: the event's
-- own time was trusted and is the row's time. Nullable without a default, so adding it rewrites nothing (and
-- TimescaleDB accepts it on compressed hypertables).
ALTER TABLE uplinks ADD COLUMN event_time timestamptz;
ALTER TABLE device_events ADD COLUMN event_time timestamptz;

-- 'crash': the worker died while it processed this message alone; the crash-loop guard set it aside.
ALTER TABLE dead_letters DROP CONSTRAINT dead_letters_stage_check;
ALTER TABLE dead_letters ADD CONSTRAINT dead_letters_stage_check
    CHECK (stage IN ('parse', 'device', 'decode', 'normalise', 'store', 'crash'));

-- The crash-loop guard, one row per worker (its MQTT client id, which owns the broker session). running is
-- true from start until a clean stop; suspect is the fingerprint of the redelivered message the worker is
-- trying alone. A start that finds running = true knows the previous run died holding messages; a suspect
-- left behind is the message it died on.
CREATE TABLE ingest_guard (
    worker     text PRIMARY KEY,
    running    boolean NOT NULL DEFAULT false,
    suspect    uuid,
    updated_at timestamptz NOT NULL DEFAULT now()
);
