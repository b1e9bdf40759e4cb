-- Two brokers: the internal one (ChirpStack, ingest workers) and the public one (the open feed, developers).
-- The feed publisher and the API get service accounts on the public broker.
ALTER TABLE mqtt_accounts DROP CONSTRAINT mqtt_accounts_role_check;
ALTER TABLE mqtt_accounts ADD CONSTRAINT mqtt_accounts_role_check
    CHECK (role IN ('chirpstack', 'ingest', 'feed', 'api', 'developer'));
-- On the developer listener a client's id is its username; a developer name can never be a service's.
ALTER TABLE mqtt_accounts ADD CONSTRAINT mqtt_accounts_developer_prefix
    CHECK ((role = 'developer') = (username LIKE 'dev-%'));
