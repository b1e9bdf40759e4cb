-- People and programs that use the IOC API. Keys are random tokens stored only as SHA-256 hashes; the
-- prefix finds the row without scanning, the hash proves the key.
CREATE TABLE api_users (
    id          serial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9._@-]{1,64}$'),
    role        text NOT NULL CHECK (role IN ('admin', 'operator', 'technician', 'developer')),
    key_prefix  text NOT NULL UNIQUE,
    key_hash    bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- The zones a district operator or a technician may see or change; none means the whole city for
-- operators and nothing for technicians.
CREATE TABLE api_user_zones (
    user_id integer NOT NULL REFERENCES api_users (id) ON DELETE CASCADE,
    zone_id integer NOT NULL REFERENCES zones (id),
    PRIMARY KEY (user_id, zone_id)
);

-- Who changed what, when; secrets are masked before they get here.
CREATE TABLE audit_log (
    id        bigserial PRIMARY KEY,
    time      timestamptz NOT NULL DEFAULT now(),
    actor     text NOT NULL,
    action    text NOT NULL,
    entity    text NOT NULL,
    entity_id text NOT NULL,
    changes   jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_entity ON audit_log (entity, entity_id, time DESC);
