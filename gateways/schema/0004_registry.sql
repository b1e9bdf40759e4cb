-- The device registry of the IOC API: commissioning steps with their times, ChirpStack provisioning
-- state, and the hierarchy of zones (wards under districts) by code, which survives boundary versions.

ALTER TABLE zones ADD COLUMN parent_code text;
ALTER TABLE zones ADD COLUMN version integer NOT NULL DEFAULT 1;
CREATE INDEX zones_current ON zones (code) WHERE valid_to IS NULL;

ALTER TABLE devices
    ADD COLUMN description          text NOT NULL DEFAULT '',
    ADD COLUMN join_eui             text CHECK (join_eui ~ '^[0-9a-f]{16}$'),
    ADD COLUMN expected_interval_s  integer CHECK (expected_interval_s > 0),
    -- ChirpStack provisioning: not_configured when the platform runs without ChirpStack.
    ADD COLUMN provisioning         text NOT NULL DEFAULT 'not_configured'
                                    CHECK (provisioning IN ('not_configured', 'pending', 'provisioned', 'failed',
                                                            'deprovision_pending', 'deprovisioned')),
    ADD COLUMN provisioning_error   text,
    ADD COLUMN provisioning_attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN provisioning_next_at timestamptz,
    -- Commissioning: each step's time, set once. first_uplink_at and decoding_verified_at are the event
    -- times of the uplinks that proved them, not the time the platform noticed.
    ADD COLUMN registered_at        timestamptz,
    ADD COLUMN provisioned_at       timestamptz,
    ADD COLUMN first_uplink_at      timestamptz,
    ADD COLUMN decoding_verified_at timestamptz,
    ADD COLUMN commissioned_at      timestamptz,
    ADD COLUMN decommissioned_at    timestamptz,
    ADD COLUMN claimed_at           timestamptz;

UPDATE devices SET registered_at = created_at WHERE status = 'registered';

CREATE INDEX devices_zone ON devices (zone_id);
CREATE INDEX devices_provisioning_due ON devices (provisioning_next_at)
    WHERE provisioning IN ('pending', 'deprovision_pending');

-- OTAA root keys wait here only until ChirpStack has them: the provisioner deletes the row once the keys
-- are set there, so the platform keeps no secrets it does not need. Never selected by any read path.
CREATE TABLE device_keys (
    device_id integer PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    app_key   text NOT NULL CHECK (app_key ~ '^[0-9a-f]{32}$'),
    nwk_key   text CHECK (nwk_key ~ '^[0-9a-f]{32}$')
);

CREATE INDEX audit_log_time ON audit_log (time DESC);

-- Gateway health as ChirpStack reports it (GatewayService.List), beside what the uplinks show.
ALTER TABLE gateways
    ADD COLUMN chirpstack_state        text CHECK (chirpstack_state IN ('never_seen', 'online', 'offline')),
    ADD COLUMN chirpstack_last_seen_at timestamptz,
    ADD COLUMN chirpstack_synced_at    timestamptz;
