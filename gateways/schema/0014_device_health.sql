-- Device health and gateway status, written once (issue 12: one home for every rule). The IOC API's device
-- list and zone summaries, the open feed's status messages, the Grafana boards and the alert rules all read
-- these; before, the API and the feed took the intervals from code as a JSON parameter and the boards from
-- device_kinds, and only the "Device silent" alert honoured a 'silence' threshold, so a device with one was
-- silent to the alert while the API, the feed and the boards still called it late (or reporting).
--
-- The constants 3600, 2 and 6 below are ioc_core.kinds' DEFAULT_INTERVAL_S, LATE_AFTER and SILENT_AFTER, for
-- a device whose kind has no device_kinds row (no kind, or one the code does not know); device_kinds itself
-- is synced from ioc_core.kinds at every migrate. tests/integration/test_device_health.py checks they agree.

-- What a device is expected to do: report every interval_s seconds (its own interval, else its kind's),
-- late once quiet for late_after_s, silent once quiet for silent_after_s (a 'silence' alert threshold in
-- seconds, the device's own row before its kind's, else its kind's silent_after times the interval).
-- alert_thresholds is unique on (metric, kind, device_id), so each join below adds at most one row.
CREATE VIEW device_intervals AS
SELECT d.id AS device_id,
       i.interval_s,
       i.interval_s * coalesce(k.late_after::double precision, 2) AS late_after_s,
       coalesce(sd.alert_above, sk.alert_above,
                i.interval_s * coalesce(k.silent_after::double precision, 6)) AS silent_after_s
FROM devices d
LEFT JOIN device_kinds k ON k.kind = d.kind
CROSS JOIN LATERAL (SELECT coalesce(d.expected_interval_s, k.interval_s, 3600) AS interval_s) i
LEFT JOIN alert_thresholds sd
       ON sd.metric = 'silence' AND sd.device_id = d.id AND sd.alert_above > 0
LEFT JOIN alert_thresholds sk
       ON sk.metric = 'silence' AND sk.device_id IS NULL AND sk.kind = d.kind AND sk.alert_above > 0;

-- Every device's last uplink and health at the time ``at`` (now by default; a fixed time makes it
-- deterministic): never_seen without an uplink, silent past silent_after_s, late past late_after_s, else
-- reporting. uplinks_last_hour counts the hour before ``at``.
--
-- A plain SQL function, so PostgreSQL inlines it into the calling query like a view with parameters. A
-- caller that reads a few devices (a page of the device list, one device, a zone) uses device_health_of
-- below instead: joining the whole fleet's health to them would look up every device in uplinks whenever
-- the calling query has more tables than the planner's join_collapse_limit (8) lets it reorder, as the
-- API's device page has. Last seen, cheaply: one look at the device's last hour in the (device_id, time) index
-- gives both its newest uplink and the hour's count for every reporting device; only a device quiet for an hour
-- needs the unbounded max() (OFFSET 0 keeps the planner from evaluating that fallback twice). Two probes per
-- device (the newest, then the count) made the zone summaries half as slow again at 1,000 devices.
CREATE FUNCTION device_health(at timestamptz DEFAULT now())
    RETURNS TABLE (device_id integer, last_seen_at timestamptz, uplinks_last_hour bigint, interval_s integer,
                   late_after_s double precision, silent_after_s double precision, health text)
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT i.device_id, ls.last_seen_at, lh.last_hour, i.interval_s, i.late_after_s, i.silent_after_s,
           CASE WHEN ls.last_seen_at IS NULL THEN 'never_seen'
                WHEN at - ls.last_seen_at > make_interval(secs => i.silent_after_s) THEN 'silent'
                WHEN at - ls.last_seen_at > make_interval(secs => i.late_after_s) THEN 'late'
                ELSE 'reporting' END
    FROM device_intervals i
    LEFT JOIN LATERAL (SELECT max(u.time) AS recent, count(*) AS last_hour FROM uplinks u
                       WHERE u.device_id = i.device_id AND u.time > at - interval '1 hour') lh ON true
    LEFT JOIN LATERAL (SELECT coalesce(lh.recent, (SELECT max(u.time) FROM uplinks u WHERE u.device_id = i.device_id))
                       AS last_seen_at OFFSET 0) ls ON true
$$;

-- device_health of the devices in ``ids`` only. Its own function rather than an optional ``ids`` argument:
-- "ids IS NULL OR device_id = ANY(ids)" cannot be simplified in a generic plan (a prepared statement's, after
-- its fifth run), which then reads every device. Both functions are inlined, this one's filter reaching the
-- devices scan.
CREATE FUNCTION device_health_of(ids integer[], at timestamptz DEFAULT now())
    RETURNS TABLE (device_id integer, last_seen_at timestamptz, uplinks_last_hour bigint, interval_s integer,
                   late_after_s double precision, silent_after_s double precision, health text)
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT * FROM device_health(at) h WHERE h.device_id = ANY(ids)
$$;

-- Every gateway's status at ``at``: ChirpStack's state while the API's gateway sync (every minute) is under
-- ten minutes old; otherwise, so that a stale "online" cannot hide an outage, from when it was last seen
-- (the newer of its last forwarded uplink and ChirpStack's last-seen): online within ten minutes, never_seen
-- without either. In a city network every gateway hears some device within ten minutes.
CREATE FUNCTION gateway_status(at timestamptz DEFAULT now())
    RETURNS TABLE (gateway_id integer, last_seen_at timestamptz, status text)
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT g.id, s.last_seen_at,
           CASE WHEN g.chirpstack_state IS NOT NULL AND g.chirpstack_synced_at > at - interval '10 minutes'
                    THEN g.chirpstack_state
                WHEN s.last_seen_at IS NULL THEN 'never_seen'
                WHEN s.last_seen_at > at - interval '10 minutes' THEN 'online'
                ELSE 'offline' END
    FROM gateways g
    CROSS JOIN LATERAL (SELECT greatest(g.last_seen_at, g.chirpstack_last_seen_at) AS last_seen_at) s
$$;
