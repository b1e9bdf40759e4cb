"""Alarms, the incidents they open and escalation, on a real database: every source raises its alarm, repeats
dedupe, clearing waits out its hold, a district's wards share one incident, an unacknowledged incident goes to
the city, and the outbox gets each message once however often a round repeats."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from ioc_core.zones import Zone
from operations.alarms import CLEAR_AFTER_S
from operations.evaluator import Round, evaluate, evaluate_round
from tests.db_rows import insert_measurement, insert_uplink, place_stations, square

pytestmark = [pytest.mark.integration, pytest.mark.both_modes]

NOW = datetime.now(UTC).replace(microsecond=0)


WARD_A = Zone("hc-ward-a", "Phường A", "ward", square(108.222, 16.060), parent="hai-chau")
WARD_B = Zone("hc-ward-b", "Phường B", "ward", square(108.218, 16.050), parent="hai-chau")

A1, A2, B1, B2 = "00000000000000a1", "00000000000000a2", "00000000000000b1", "00000000000000b2"
# dev_eui → (kind, ward, minutes since its last uplink)
DEVICES = {
    A1: ("water_level", WARD_A, 1),
    A2: ("water_level", WARD_A, 120),  # silent: water level stations report every 5 min, silent after 30
    B1: ("water_level", WARD_B, 1),
    B2: ("rain_gauge", WARD_B, 1),
}

# Operators: one of Hải Châu, one of its ward A, one of Sơn Trà, one of the city (no zones), one of Hải Châu whose
# key was revoked, and a technician of Hải Châu.
USERS = {"hc-op": ("operator", "hai-chau"), "wa-op": ("operator", "hc-ward-a"), "st-op": ("operator", "son-tra"),
         "city-op": ("operator", None), "old-op": ("operator", "hai-chau"), "hc-tech": ("technician", "hai-chau")}


@pytest.fixture
def city(db_url: str) -> Iterator[dict[str, int]]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        ids = place_stations(conn, [WARD_A, WARD_B], {eui: (kind, ward) for eui, (kind, ward, _a) in DEVICES.items()})
        for eui, (_kind, _ward, age) in DEVICES.items():
            insert_uplink(conn, ids[eui], NOW - timedelta(minutes=age))
        for n, (name, (role, zone)) in enumerate(USERS.items()):
            user = conn.execute("INSERT INTO api_users (name, role, key_prefix, key_hash) VALUES (%s, %s, %s, '') "
                                "RETURNING id", (name, role, f"p{n}")).fetchone()
            assert user is not None
            if name == "old-op":
                conn.execute("UPDATE api_users SET revoked_at = now() WHERE id = %s", (user[0],))
            if zone:
                conn.execute("INSERT INTO api_user_zones (user_id, zone_id) SELECT %s, id FROM zones "
                             "WHERE code = %s AND valid_to IS NULL", (user[0], zone))
            for event in ("incident_new", "escalated"):
                conn.execute("INSERT INTO notification_routes (user_name, event, channel, address) "
                             "VALUES (%s, %s, 'email', %s)", (name, event, f"{name}@example.vn"))
        yield ids


def _reading(conn: psycopg.Connection, device_id: int, metric: str, value: float, at: datetime) -> None:
    insert_uplink(conn, device_id, at)
    insert_measurement(conn, device_id, metric, value, at)


def _round(conn: psycopg.Connection, at: datetime) -> Round:
    done = evaluate_round(conn, at)
    assert done is not None
    return done


def _alarms(conn: psycopg.Connection, source: str | None = None) -> dict[str, tuple[Any, ...]]:
    """Active alarms by subject: (severity, zone, count, clearing_since, incident)."""
    rows = conn.execute(
        "SELECT subject, severity, zone_code, count, clearing_since, incident_id FROM alarms "
        "WHERE state = 'active' AND (%(s)s::text IS NULL OR source = %(s)s) ORDER BY subject", {"s": source})
    return {r[0]: tuple(r[1:]) for r in rows}


def _outbox(conn: psycopg.Connection) -> list[tuple[str, str]]:
    return [(e, a) for e, a in conn.execute("SELECT event, address FROM notification_outbox ORDER BY event, address")]


def test_hazard_alarms_of_two_wards_make_one_district_incident_and_repeats_dedupe(
        db_url: str, city: dict[str, int]) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        _reading(conn, city[A1], "water_level", 1.8, NOW - timedelta(minutes=1))  # alert: major
        _reading(conn, city[B1], "water_level", 2.6, NOW - timedelta(minutes=1))  # danger: critical
        done = _round(conn, NOW)
        assert done.changes  # the status round still reports its changes
        hazard = _alarms(conn, "hazard")
        assert {s: v[:3] for s, v in hazard.items()} == {
            f"{A1}:water_level": ("major", "hc-ward-a", 1), f"{B1}:water_level": ("critical", "hc-ward-b", 1)}
        incidents = conn.execute("SELECT id, zone_code, hazard, kind, severity, state, owner, title FROM incidents "
                                 "ORDER BY hazard").fetchall()
        # One flood incident for Hải Châu with both wards' alarms; the silent gauge A2 opens its device incident.
        assert [i[1:7] for i in incidents] == [
            ("hai-chau", "device", "device", "minor", "new", "hai-chau"),
            ("hai-chau", "flood", "flood", "critical", "new", "hai-chau")]
        flood = incidents[1][0]
        assert incidents[1][7] == "Ngập lụt – Hải Châu / Flood – Hải Châu"
        assert {v[4] for v in hazard.values()} == {flood}
        assert _alarms(conn, "device_silent") == {A2: ("minor", "hc-ward-a", 1, None, incidents[0][0])}
        events = conn.execute("SELECT actor, action, details->>'subject' FROM incident_events "
                              "WHERE incident_id = %s ORDER BY id", (flood,)).fetchall()
        assert [e[1] for e in events] == ["opened", "alarm_added", "alarm_added"]
        assert {e[0] for e in events} == {"system"}
        # Opening tells Hải Châu's (and its wards') and the city's operators, once per incident: not Sơn Trà's,
        # not a revoked one, not technicians.
        assert _outbox(conn) == [("incident_new", f"{u}@example.vn") for u in ("city-op", "hc-op", "wa-op")
                                 for _ in range(2)]
        payload = conn.execute("SELECT payload FROM notification_outbox WHERE address = 'hc-op@example.vn' "
                               "AND idempotency_key LIKE %s", (f"incident:{flood}:new:%",)).fetchone()[0]
        assert payload["data"]["incident_id"] == flood and payload["data"]["severity"] == "critical"

        # The same conditions again: counts grow, nothing new is opened or queued.
        _reading(conn, city[A1], "water_level", 1.9, NOW + timedelta(seconds=5))
        again = _round(conn, NOW + timedelta(seconds=10))
        assert again.changes == [] and again.alarms.opened == [] and again.incidents_opened == []
        assert {s: v[2] for s, v in _alarms(conn).items()} == {
            f"{A1}:water_level": 2, f"{B1}:water_level": 2, A2: 2}
        assert conn.execute("SELECT count(*) FROM incidents").fetchone()[0] == 2
        assert conn.execute("SELECT count(*) FROM notification_outbox").fetchone()[0] == 6
        assert conn.execute("SELECT details->>'value' FROM alarms WHERE subject = %s",
                            (f"{A1}:water_level",)).fetchone()[0] == "1.9"


def test_alarms_clear_only_after_the_hold_and_below_the_margin(db_url: str, city: dict[str, int]) -> None:
    subject = f"{A1}:water_level"
    with psycopg.connect(db_url, autocommit=True) as conn:
        t = NOW
        _reading(conn, city[A1], "water_level", 1.8, t)
        _round(conn, t)
        incident = _alarms(conn)[subject][4]

        # 1.45 m is below the 1.5 m alert level but within its 5 % margin: the alarm holds.
        t += timedelta(minutes=1)
        _reading(conn, city[A1], "water_level", 1.45, t)
        _round(conn, t)
        assert _alarms(conn)[subject][2:4] == (2, None)

        # Well below: clearing begins, but the alarm stays active through the hold.
        t += timedelta(minutes=1)
        _reading(conn, city[A1], "water_level", 1.0, t)
        _round(conn, t)
        assert _alarms(conn)[subject][3] == t
        # Back above during the hold: clearing is cancelled, the same alarm counts on.
        t += timedelta(minutes=1)
        _reading(conn, city[A1], "water_level", 1.6, t)
        _round(conn, t)
        assert _alarms(conn)[subject][2:4] == (3, None)

        t += timedelta(minutes=1)
        _reading(conn, city[A1], "water_level", 1.0, t)
        _round(conn, t)
        started = t
        t = started + timedelta(seconds=CLEAR_AFTER_S - 1)
        _reading(conn, city[A1], "water_level", 1.0, t)
        _round(conn, t)
        assert subject in _alarms(conn)
        t = started + timedelta(seconds=CLEAR_AFTER_S)
        _reading(conn, city[A1], "water_level", 1.0, t)
        done = _round(conn, t)
        assert [a.subject for a in done.alarms.cleared] == [subject]
        assert subject not in _alarms(conn)
        assert conn.execute("SELECT state, cleared_at, count FROM alarms WHERE subject = %s",
                            (subject,)).fetchone() == ("cleared", t, 3)
        # The incident records it but stays open: operators resolve incidents.
        assert conn.execute("SELECT state FROM incidents WHERE id = %s", (incident,)).fetchone()[0] == "new"
        assert conn.execute("SELECT count(*) FROM incident_events WHERE incident_id = %s AND action = "
                            "'alarm_cleared'", (incident,)).fetchone()[0] == 1

        # Rising again later is a new alarm, joining the still-open incident.
        t += timedelta(minutes=1)
        _reading(conn, city[A1], "water_level", 1.7, t)
        _round(conn, t)
        assert _alarms(conn)[subject][2] == 1 and _alarms(conn)[subject][4] == incident


def test_a_silent_station_keeps_its_hazard_alarm_as_it_is(db_url: str, city: dict[str, int]) -> None:
    subject = f"{A1}:water_level"
    with psycopg.connect(db_url, autocommit=True) as conn:
        _reading(conn, city[A1], "water_level", 1.8, NOW)
        _round(conn, NOW)
        # An hour on, nothing heard: the station's value is unknown, so its alarm neither repeats nor clears.
        later = NOW + timedelta(hours=1)
        _round(conn, later)
        assert _alarms(conn)[subject][2:4] == (1, None)
        assert A1 in _alarms(conn, "device_silent")


def test_every_technical_source_raises_its_alarm(db_url: str, city: dict[str, int]) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        # B1 flat: twelve 5-minute readings of exactly 0.70 m (its kind's rule: 12 intervals).
        for i in range(12):
            _reading(conn, city[B1], "water_level", 0.7, NOW - timedelta(minutes=5 * (11 - i)))
            # A1 the same, but one reading differs by a centimetre: alive, not flat.
            _reading(conn, city[A1], "water_level", 0.51 if i == 6 else 0.5, NOW - timedelta(minutes=5 * (11 - i)))
        # B2 reports a reading the ingest flagged as outside the metric's range (quality 1).
        insert_uplink(conn, city[B2], NOW - timedelta(minutes=2))
        conn.execute("""INSERT INTO measurements (time, device_id, zone_id, metric_id, value, quality)
                        SELECT %s, d.id, d.zone_id, m.id, 5000, 1 FROM devices d, metrics m
                        WHERE d.id = %s AND m.name = 'rainfall'""", (NOW - timedelta(minutes=2), city[B2]))
        # A1: a battery voltage that is not a number (quality 2); JSON has no NaN, the alarm must still be stored.
        insert_uplink(conn, city[A1], NOW - timedelta(minutes=1))
        conn.execute("""INSERT INTO measurements (time, device_id, zone_id, metric_id, value, quality)
                        SELECT %s, d.id, d.zone_id, m.id, 'NaN', 2 FROM devices d, metrics m
                        WHERE d.id = %s AND m.name = 'battery_voltage'""", (NOW - timedelta(minutes=1), city[A1]))
        # B2 again: a rain rate inside the metric's range but outside its kind's rule.
        conn.execute("INSERT INTO device_alarm_rules (kind, metric, minimum, maximum) "
                     "VALUES ('rain_gauge', 'rain_rate', 0, 100)")
        insert_measurement(conn, city[B2], "rain_rate", 150.0, NOW - timedelta(minutes=2))
        # A gateway in ward A, last seen an hour ago; one in no zone, online.
        west, south, east, north = WARD_A.bounds
        lon, lat = (west + east) / 2, (south + north) / 2
        conn.execute("INSERT INTO gateways (gateway_eui, name, latitude, longitude, last_seen_at) VALUES "
                     "('0016c001f0000001', 'gw hc', %s, %s, %s), ('0016c001f0000002', 'gw ok', 0, 0, %s)",
                     (lat, lon, NOW - timedelta(hours=1), NOW - timedelta(minutes=1)))
        # 11 dead letters at the decode stage in the last 15 minutes, none the day before (floor 10).
        conn.execute("""INSERT INTO dead_letters (fingerprint, received_at, topic, payload, stage, reason)
                        SELECT gen_random_uuid(), %s - make_interval(secs => g), 't', '\\x00', 'decode', 'bad'
                        FROM generate_series(1, 11) g""", (NOW,))
        _round(conn, NOW)
        got = {(s, subj): (sev, zone) for s, subj, sev, zone in conn.execute(
            "SELECT source, subject, severity, zone_code FROM alarms WHERE state = 'active' AND source <> 'hazard'")}
        assert got == {
            ("device_silent", A2): ("minor", "hc-ward-a"),
            ("device_flatline", f"{B1}:water_level"): ("minor", "hc-ward-b"),
            ("device_out_of_range", f"{B2}:rainfall"): ("minor", "hc-ward-b"),
            ("device_out_of_range", f"{B2}:rain_rate"): ("minor", "hc-ward-b"),
            ("device_out_of_range", f"{A1}:battery_voltage"): ("minor", "hc-ward-a"),
            ("gateway_offline", "0016c001f0000001"): ("major", "hc-ward-a"),
            ("dead_letters", "decode"): ("major", None),
        }
        assert conn.execute("SELECT message, details->>'value' FROM alarms WHERE subject = %s",
                            (f"{A1}:battery_voltage",)).fetchone() == (
            f"{A1} battery_voltage nan not a finite number", "nan")
        incidents = {(z, h): (sev, owner) for z, h, sev, owner in conn.execute(
            "SELECT zone_code, hazard, severity, owner FROM incidents")}
        assert incidents == {("hai-chau", "device"): ("minor", "hai-chau"),
                             ("hai-chau", "network"): ("major", "hai-chau"),
                             ("city", "pipeline"): ("major", "city")}
        # The pipeline incident is the city's: only city operators hear of it.
        assert [a for e, a in conn.execute(
            "SELECT o.event, o.address FROM notification_outbox o WHERE o.payload->'data'->>'hazard' = 'pipeline'")
        ] == ["city-op@example.vn"]

        # Nothing stored for two hours while the devices should report every few minutes: the ingest stalled.
        stalled = NOW + timedelta(hours=2)
        _round(conn, stalled)
        assert _alarms(conn, "ingest_stalled") == {"ingest": ("critical", None, 1, None, _incident(conn, "pipeline"))}
        assert conn.execute("SELECT severity FROM incidents WHERE hazard = 'pipeline'").fetchone()[0] == "critical"


def _incident(conn: psycopg.Connection, hazard: str) -> int:
    row = conn.execute("SELECT id FROM incidents WHERE hazard = %s", (hazard,)).fetchone()
    assert row is not None
    return int(row[0])


def test_a_quiet_fleet_is_not_a_stalled_ingest(db_url: str, city: dict[str, int]) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        # Ten minutes without an uplink, when the fleet sends one every ~86 s between them: not yet stalled.
        _round(conn, NOW + timedelta(minutes=10))
        assert _alarms(conn, "ingest_stalled") == {}
        conn.execute("UPDATE devices SET status = 'decommissioned'")
        _round(conn, NOW + timedelta(hours=5))
        assert _alarms(conn, "ingest_stalled") == {}  # no device should report: nothing to miss


def test_an_unacknowledged_incident_is_escalated_once_per_level(db_url: str, city: dict[str, int]) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DELETE FROM uplinks WHERE device_id = %s", (city[A2],))  # no device incident here
        _reading(conn, city[B1], "water_level", 2.6, NOW)  # critical: escalated after 300 s unacknowledged
        _round(conn, NOW)
        incident = _incident(conn, "flood")
        queued = conn.execute("SELECT count(*) FROM notification_outbox").fetchone()[0]

        _reading(conn, city[B1], "water_level", 2.6, NOW + timedelta(seconds=299))
        assert _round(conn, NOW + timedelta(seconds=299)).escalated == []
        t = NOW + timedelta(seconds=300)
        _reading(conn, city[B1], "water_level", 2.6, t)
        done = _round(conn, t)
        assert [(e.incident_id, e.level, e.owner_before) for e in done.escalated] == [(incident, 1, "hai-chau")]
        assert conn.execute("SELECT owner, escalation_level, escalated_at, state FROM incidents WHERE id = %s",
                            (incident,)).fetchone() == ("city", 1, t, "new")
        assert conn.execute("SELECT actor, details->>'level' FROM incident_events WHERE incident_id = %s AND "
                            "action = 'escalated'", (incident,)).fetchall() == [("system", "1")]
        escalated = conn.execute("SELECT address, idempotency_key FROM notification_outbox WHERE event = "
                                 "'escalated' ORDER BY address").fetchall()
        assert escalated == [(f"{u}@example.vn", f"incident:{incident}:escalated:1:email:{u}@example.vn")
                             for u in ("city-op", "hc-op", "wa-op")]

        # The same round again adds nothing; the next level waits for the timer again.
        assert _round(conn, t).escalated == []
        assert _round(conn, t + timedelta(seconds=299)).escalated == []
        assert conn.execute("SELECT count(*) FROM notification_outbox").fetchone()[0] == queued + 3
        assert [e.level for e in _round(conn, t + timedelta(seconds=300)).escalated] == [2]

        # Acknowledged: no more escalation, however long it waits.
        conn.execute("UPDATE incidents SET state = 'acknowledged', acknowledged_at = %s WHERE id = %s",
                     (t, incident))
        assert _round(conn, t + timedelta(hours=1)).escalated == []
        assert conn.execute("SELECT escalation_level FROM incidents WHERE id = %s", (incident,)).fetchone()[0] == 2


def test_evaluate_still_returns_only_the_status_changes(db_url: str, city: dict[str, int]) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        _reading(conn, city[A1], "water_level", 1.8, NOW)
        changes = evaluate(conn, NOW)
        assert changes and all(c.hazard in ("flood", "heavy_rain", "air_quality") for c in changes)
        assert conn.execute("SELECT count(*) FROM alarms WHERE source = 'hazard'").fetchone()[0] == 1


def test_an_incident_rises_with_its_alarms_and_never_falls(db_url: str, city: dict[str, int]) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        _reading(conn, city[A1], "water_level", 1.8, NOW)  # major
        _round(conn, NOW)
        incident = _incident(conn, "flood")
        assert conn.execute("SELECT severity FROM incidents WHERE id = %s", (incident,)).fetchone()[0] == "major"
        # The same station passes its danger level: its alarm and the incident become critical.
        t = NOW + timedelta(minutes=1)
        _reading(conn, city[A1], "water_level", 2.8, t)
        done = _round(conn, t)
        assert [(a.subject, a.severity) for a in done.alarms.raised] == [(f"{A1}:water_level", "critical")]
        assert conn.execute("SELECT severity, updated_at FROM incidents WHERE id = %s",
                            (incident,)).fetchone() == ("critical", t)
        assert conn.execute("SELECT details->>'from', details->>'to' FROM incident_events WHERE incident_id = %s "
                            "AND action = 'severity_raised'", (incident,)).fetchall() == [("major", "critical")]
        # Falling back to the alert level lowers neither; a new major alarm in ward B joins without a raise.
        t += timedelta(minutes=1)
        _reading(conn, city[A1], "water_level", 1.8, t)
        _reading(conn, city[B1], "water_level", 1.9, t)
        _round(conn, t)
        assert _alarms(conn, "hazard")[f"{A1}:water_level"][0] == "critical"
        assert conn.execute("SELECT severity FROM incidents WHERE id = %s", (incident,)).fetchone()[0] == "critical"
        assert [a for (a,) in conn.execute("SELECT action FROM incident_events WHERE incident_id = %s ORDER BY id",
                                           (incident,))] == ["opened", "alarm_added", "severity_raised",
                                                             "alarm_added"]


def test_a_round_that_dies_before_its_commit_leaves_nothing_and_the_next_does_it_once(
        db_url: str, city: dict[str, int]) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        _reading(conn, city[A1], "water_level", 1.8, NOW)
    # A worker inside a transaction of its own dies after the round's work, before the commit.
    dying = psycopg.connect(db_url)
    dying.execute("SELECT 1")  # the outer transaction: the round's own block becomes a savepoint
    assert evaluate_round(dying, NOW) is not None
    assert dying.execute("SELECT count(*) FROM notification_outbox").fetchone()[0] == 6
    with psycopg.connect(db_url, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", (dying.info.backend_pid,))
    dying.close()
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM alarms").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM notification_outbox").fetchone()[0] == 0
        # The next round, in another process, catches up from the stored readings; repeats add nothing.
        for seconds in (5, 5, 10):
            _round(conn, NOW + timedelta(seconds=seconds))
        assert conn.execute("SELECT count(*) FROM alarms").fetchone()[0] == 2  # A1's hazard, A2 silent
        assert conn.execute("SELECT count(*) FROM incidents").fetchone()[0] == 2
        assert conn.execute("SELECT count(*) FROM notification_outbox").fetchone()[0] == 6
        assert conn.execute("SELECT count(DISTINCT idempotency_key) FROM notification_outbox").fetchone()[0] == 6
