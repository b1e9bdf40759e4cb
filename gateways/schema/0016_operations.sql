-- Operations (issue 13): alarms, the incidents that group them, their timelines and SOP checklists, public
-- warnings (OASIS CAP 1.2) with two-person approval, and the notification outbox. The rules live in
-- operations/ (status, alarms, lifecycle, escalation, warnings); these tables are what they read and write.

-- Severities, ordered, each with how long an incident may wait unacknowledged before it is escalated to the
-- city IOC (NULL: never). Data, so a city changes the timers without a release.
CREATE TABLE alarm_severities (
    severity         text PRIMARY KEY CHECK (severity ~ '^[a-z]+$'),
    rank             smallint NOT NULL UNIQUE,
    escalate_after_s integer CHECK (escalate_after_s IS NULL OR escalate_after_s > 0),
    name_vi          text NOT NULL,
    name_en          text NOT NULL
);

INSERT INTO alarm_severities (severity, rank, escalate_after_s, name_vi, name_en) VALUES
    ('info', 0, NULL, 'Thông tin', 'Info'),
    ('minor', 1, 3600, 'Nhẹ', 'Minor'),
    ('major', 2, 900, 'Nghiêm trọng', 'Major'),
    ('critical', 3, 300, 'Khẩn cấp', 'Critical');

-- Per-kind rules for device alarms: a device flat-lined when `metric` kept the same value for
-- `flatline_intervals` reporting intervals (only for kinds whose readings vary); out of range when a reading
-- leaves [minimum, maximum] (NULL: the metric's own plausible range from `metrics`).
CREATE TABLE device_alarm_rules (
    kind               text NOT NULL,
    metric             text NOT NULL,
    flatline_intervals integer CHECK (flatline_intervals IS NULL OR flatline_intervals >= 2),
    minimum            double precision,
    maximum            double precision,
    severity           text NOT NULL DEFAULT 'minor' REFERENCES alarm_severities (severity),
    PRIMARY KEY (kind, metric)
);

INSERT INTO device_alarm_rules (kind, metric, flatline_intervals) VALUES
    ('water_level', 'water_level', 12),
    ('air_quality', 'pm2_5', 12),
    ('weather_station', 'temperature', 12);

-- Incidents: one per zone and hazard (or technical kind) while open. `kind` names the SOP card; `owner` is the
-- zone code of the centre that owns it (the zone's district) or 'city' once escalated or city-wide.
CREATE TABLE incidents (
    id               bigserial PRIMARY KEY,
    zone_code        text NOT NULL,
    hazard           text NOT NULL,
    kind             text NOT NULL,
    severity         text NOT NULL REFERENCES alarm_severities (severity),
    state            text NOT NULL DEFAULT 'new'
                     CHECK (state IN ('new', 'acknowledged', 'in_progress', 'resolved', 'closed')),
    title            text NOT NULL,
    owner            text NOT NULL,
    assignee         text,
    opened_at        timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    acknowledged_at  timestamptz,
    resolved_at      timestamptz,
    closed_at        timestamptz,
    escalated_at     timestamptz,
    escalation_level smallint NOT NULL DEFAULT 0
);
-- At most one open incident per zone and hazard: new alarms join it instead of opening another.
CREATE UNIQUE INDEX incidents_open ON incidents (zone_code, hazard) WHERE state NOT IN ('resolved', 'closed');
CREATE INDEX incidents_state ON incidents (state, opened_at DESC);

-- Alarms: a condition seen, deduplicated by (source, subject) while active; a repeat bumps last_seen and
-- count. `clearing_since` holds the hysteresis: the condition has been absent since then, and the alarm clears
-- only once that lasted long enough.
CREATE TABLE alarms (
    id             bigserial PRIMARY KEY,
    source         text NOT NULL CHECK (source IN ('hazard', 'device_silent', 'device_flatline',
                                                   'device_out_of_range', 'gateway_offline', 'dead_letters',
                                                   'ingest_stalled')),
    subject        text NOT NULL,
    hazard         text,
    zone_code      text,
    device_eui     text,
    severity       text NOT NULL REFERENCES alarm_severities (severity),
    state          text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'cleared')),
    message        text NOT NULL,
    details        jsonb NOT NULL DEFAULT '{}',
    first_seen     timestamptz NOT NULL,
    last_seen      timestamptz NOT NULL,
    count          integer NOT NULL DEFAULT 1 CHECK (count > 0),
    clearing_since timestamptz,
    cleared_at     timestamptz,
    incident_id    bigint REFERENCES incidents (id) ON DELETE SET NULL
);
CREATE UNIQUE INDEX alarms_active ON alarms (source, subject) WHERE state = 'active';
CREATE INDEX alarms_incident ON alarms (incident_id);
CREATE INDEX alarms_zone ON alarms (zone_code, first_seen DESC);

-- Every change to an incident: who (a user's name, or 'system'), when, what. Never updated or deleted.
CREATE TABLE incident_events (
    id          bigserial PRIMARY KEY,
    incident_id bigint NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL,
    actor       text NOT NULL,
    action      text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX incident_events_incident ON incident_events (incident_id, at, id);

-- The SOP checklist of an incident: which steps of its card are ticked, by whom (each tick is also an event).
CREATE TABLE incident_checklist (
    incident_id bigint NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    step        text NOT NULL,
    done_by     text NOT NULL,
    done_at     timestamptz NOT NULL,
    PRIMARY KEY (incident_id, step)
);

-- Public warnings (CAP 1.2). A draft is approved by a different operator before it goes out; an Update or
-- Cancel references the warning it replaces. `cap_xml` is the message as sent, frozen at approval.
CREATE TABLE warnings (
    id          bigserial PRIMARY KEY,
    identifier  text NOT NULL UNIQUE,
    incident_id bigint REFERENCES incidents (id) ON DELETE SET NULL,
    msg_type    text NOT NULL CHECK (msg_type IN ('Alert', 'Update', 'Cancel')),
    replaces    bigint REFERENCES warnings (id),
    state       text NOT NULL DEFAULT 'draft' CHECK (state IN ('draft', 'approved', 'rejected')),
    zones       text[] NOT NULL,
    content     jsonb NOT NULL,
    drafted_by  text NOT NULL,
    drafted_at  timestamptz NOT NULL,
    approved_by text,
    approved_at timestamptz,
    cap_xml     text,
    CHECK (approved_by IS NULL OR approved_by <> drafted_by),
    CHECK ((state = 'approved') = (approved_at IS NOT NULL AND cap_xml IS NOT NULL)),
    CHECK ((msg_type = 'Alert') = (replaces IS NULL))
);
CREATE INDEX warnings_approved ON warnings (approved_at DESC) WHERE state = 'approved';

-- Who is told what, where: an operator's own choice of channels for 'incident_new' and 'escalated'
-- (user_name set), or the public recipients of approved warnings (user_name NULL, event 'warning').
CREATE TABLE notification_routes (
    id        serial PRIMARY KEY,
    user_name text REFERENCES api_users (name) ON DELETE CASCADE ON UPDATE CASCADE,
    event     text NOT NULL CHECK (event IN ('incident_new', 'escalated', 'warning')),
    channel   text NOT NULL CHECK (channel IN ('webhook', 'email', 'zalo', 'sms')),
    address   text NOT NULL,
    UNIQUE NULLS NOT DISTINCT (user_name, event, channel, address)
);

-- At-least-once delivery: a message is written here in the same transaction as what caused it (an approval,
-- an escalation), then a dispatcher sends it. The idempotency key is sent along so a receiver can drop a
-- repeat after a crash between "sent" and "recorded".
CREATE TABLE notification_outbox (
    id              bigserial PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    event           text NOT NULL,
    channel         text NOT NULL CHECK (channel IN ('webhook', 'email', 'zalo', 'sms', 'mqtt')),
    address         text NOT NULL,
    payload         jsonb NOT NULL,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    sent_at         timestamptz,
    last_error      text
);
CREATE INDEX notification_outbox_due ON notification_outbox (next_attempt_at) WHERE state = 'pending';

-- Every attempt, kept: what was tried, when, how it went.
CREATE TABLE notification_attempts (
    id          bigserial PRIMARY KEY,
    outbox_id   bigint NOT NULL REFERENCES notification_outbox (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL,
    ok          boolean NOT NULL,
    detail      text NOT NULL,
    duration_ms integer NOT NULL
);
CREATE INDEX notification_attempts_outbox ON notification_attempts (outbox_id, at);
