"""The hazard status evaluator on a real database: stations' readings and health become each ward's and
district's status, changes are stored with their reasons, and rounds never interleave."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from ioc_core.zones import Zone
from operations.evaluator import LOCK_KEY, evaluate
from tests.db_rows import insert_measurement, insert_uplink, place_stations, square

pytestmark = [pytest.mark.integration, pytest.mark.both_modes]

NOW = datetime.now(UTC).replace(microsecond=0)


# Two wards of Hải Châu, small squares inside the district.
WARD_A = Zone("hc-ward-a", "Phường A", "ward", square(108.222, 16.060), parent="hai-chau")
WARD_B = Zone("hc-ward-b", "Phường B", "ward", square(108.218, 16.050), parent="hai-chau")

# dev_eui → (kind, ward, minutes since its last uplink or None)
DEVICES = {
    "00000000000000a1": ("water_level", WARD_A, 1),    # the river gauge that rises
    "00000000000000a2": ("water_level", WARD_A, 120),  # silent for two hours
    "00000000000000b1": ("water_level", WARD_B, 1),
    "00000000000000b2": ("rain_gauge", WARD_B, 1),
}


@pytest.fixture
def city(db_url: str) -> Iterator[dict[str, int]]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        ids = place_stations(conn, [WARD_A, WARD_B], {eui: (kind, ward) for eui, (kind, ward, _a) in DEVICES.items()})
        placed = dict(conn.execute("SELECT d.dev_eui, z.code FROM devices d JOIN zones z ON z.id = d.zone_id"))
        assert placed == {eui: ward.code for eui, (_k, ward, _a) in DEVICES.items()}, placed
        for eui, (_kind, _ward, age) in DEVICES.items():
            if age is not None:
                insert_uplink(conn, ids[eui], NOW - timedelta(minutes=age))
        yield ids


def _statuses(conn: psycopg.Connection) -> dict[tuple[str, str], str]:
    rows = conn.execute("SELECT zone_code, hazard, status FROM zone_hazard_status "
                        "WHERE zone_code IN ('hai-chau', 'hc-ward-a', 'hc-ward-b')").fetchall()
    return {(z, h): s for z, h, s in rows}


def test_statuses_follow_the_stations_and_changes_keep_their_reasons(db_url: str, city: dict[str, int]) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        insert_measurement(conn, city["00000000000000a1"], "water_level", 1.8, NOW - timedelta(minutes=1))  # alert
        # The silent gauge's old 3.0 m does not count.
        insert_measurement(conn, city["00000000000000a2"], "water_level", 3.0, NOW - timedelta(minutes=120))
        insert_measurement(conn, city["00000000000000b1"], "water_level", 0.5, NOW - timedelta(minutes=1))  # normal
        # 40 mm two hours ago and 20 mm in the last hour: 20 mm/1 h is watch, 60 mm/3 h is alert.
        insert_measurement(conn, city["00000000000000b2"], "rainfall", 40.0, NOW - timedelta(minutes=130))
        insert_measurement(conn, city["00000000000000b2"], "rainfall", 20.0, NOW - timedelta(minutes=5))

        changes = evaluate(conn, NOW)
        assert changes is not None
        assert _statuses(conn) == {
            ("hc-ward-a", "flood"): "alert", ("hc-ward-b", "flood"): "normal", ("hai-chau", "flood"): "alert",
            ("hc-ward-a", "heavy_rain"): "unknown", ("hc-ward-b", "heavy_rain"): "alert",
            ("hai-chau", "heavy_rain"): "alert",
            ("hc-ward-a", "air_quality"): "unknown", ("hc-ward-b", "air_quality"): "unknown",
            ("hai-chau", "air_quality"): "unknown",
        }
        # Districts without any station are unknown, never normal.
        assert conn.execute("SELECT status, reason FROM zone_hazard_status WHERE zone_code = 'son-tra' "
                            "AND hazard = 'flood'").fetchone() == ("unknown", "no stations")
        reason, evidence = conn.execute(
            "SELECT reason, evidence FROM zone_hazard_status WHERE zone_code = 'hc-ward-a' AND hazard = 'flood'"
        ).fetchone()
        assert reason == "alert: 00000000000000a1 water_level 1.8; 1 station(s) did not report in time"
        assert [(e["dev_eui"], e["value"], e["level"]) for e in evidence] == [("00000000000000a1", 1.8, "alert")]
        rain = conn.execute("SELECT evidence FROM zone_hazard_status WHERE zone_code = 'hc-ward-b' "
                            "AND hazard = 'heavy_rain'").fetchone()[0]
        assert [(e["metric"], e["value"], e["level"]) for e in rain] == [("rainfall_3h", 60.0, "alert")]

        # The same data again: nothing changes, nothing is added to the history.
        before = conn.execute("SELECT count(*) FROM zone_hazard_changes").fetchone()[0]
        assert evaluate(conn, NOW + timedelta(seconds=10)) == []
        assert conn.execute("SELECT count(*) FROM zone_hazard_changes").fetchone()[0] == before

        # The river falls; with its neighbour still silent, ward A and so Hải Châu are unknown, not normal.
        insert_measurement(conn, city["00000000000000a1"], "water_level", 0.4, NOW + timedelta(seconds=20))
        later = NOW + timedelta(seconds=30)
        changes = evaluate(conn, later)
        assert changes is not None
        assert sorted((c.zone, c.hazard, c.before, c.after) for c in changes) == [
            ("hai-chau", "flood", "alert", "unknown"), ("hc-ward-a", "flood", "alert", "unknown")]
        history = conn.execute(
            """SELECT at, from_status, to_status FROM zone_hazard_changes
               WHERE zone_code = 'hc-ward-a' AND hazard = 'flood' ORDER BY id""").fetchall()
        assert history == [(NOW, None, "alert"), (later, "alert", "unknown")]
        assert conn.execute("SELECT since FROM zone_hazard_status WHERE zone_code = 'hc-ward-a' "
                            "AND hazard = 'flood'").fetchone()[0] == later


def test_rounds_do_not_interleave(db_url: str, city: dict[str, int]) -> None:
    with psycopg.connect(db_url) as holder, psycopg.connect(db_url, autocommit=True) as other:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        assert evaluate(other, NOW) is None  # another round is running: this one does nothing
        assert other.execute("SELECT count(*) FROM zone_hazard_status").fetchone()[0] == 0
        holder.rollback()
        assert evaluate(other, NOW)  # the lock is free again


def test_a_level_wavering_at_a_threshold_changes_the_status_once(db_url: str, city: dict[str, int]) -> None:
    gauge = city["00000000000000b1"]  # ward B's only flood station; alert above 1.5 m
    with psycopg.connect(db_url, autocommit=True) as conn:
        rounds = []
        for step, value in enumerate((1.6, 1.46, 1.55, 1.44, 1.40)):
            at = NOW + timedelta(seconds=10 * step)
            insert_measurement(conn, gauge, "water_level", value, at - timedelta(seconds=1))
            evaluate(conn, at)
            rounds.append(_statuses(conn)[("hc-ward-b", "flood")])
        history = conn.execute(
            "SELECT from_status, to_status FROM zone_hazard_changes WHERE zone_code = 'hc-ward-b' "
            "AND hazard = 'flood' ORDER BY id").fetchall()
    # 1.46 and 1.44 are within 5 % below 1.5 m: held at alert; 1.40 is past the margin.
    assert rounds == ["alert", "alert", "alert", "alert", "watch"]
    assert history == [(None, "alert"), ("alert", "watch")]
