-- Open data: which devices the public feed and exports may show, and the broker accounts of services and
-- third-party developers.

-- City sensors are public unless their owner says otherwise; a private device is never in the feed or exports.
ALTER TABLE devices ADD COLUMN public boolean NOT NULL DEFAULT true;

-- Accounts on the MQTT broker. The password is shown once at creation; only Mosquitto's PBKDF2-SHA512 hash
-- is kept, which is what its password file holds. Revoked accounts stay for the audit trail.
CREATE TABLE mqtt_accounts (
    id            serial PRIMARY KEY,
    username      text NOT NULL UNIQUE CHECK (username ~ '^[A-Za-z0-9._-]{1,64}$'),
    role          text NOT NULL CHECK (role IN ('chirpstack', 'ingest', 'developer')),
    user_id       integer REFERENCES api_users (id),
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    CHECK (role <> 'developer' OR user_id IS NOT NULL)
);
CREATE INDEX mqtt_accounts_user ON mqtt_accounts (user_id);
