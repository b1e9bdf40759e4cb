"""Device health and gateway status are database functions, ``device_health`` and ``gateway_status``: the IOC
API, the open feed, the boards and the alert rules read them, so for the same data they all say the same."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from dashboards.exercise import all_cases, parse_relative, run_case, sample_variables
from ingest.feed.status import StatusPublisher
from ingest.registry import DeviceRecord, register_devices, seed_zones
from ioc_api.queries.devices import DeviceFilters, list_devices
from ioc_api.queries.monitoring import list_gateways, zone_summaries
from ioc_core.kinds import DEFAULT_INTERVAL_S, KINDS, LATE_AFTER, SILENT_AFTER
from ioc_core.zones import load_default_zones
from tests.db_rows import insert_uplink

pytestmark = [pytest.mark.integration, pytest.mark.both_modes]

HAI_CHAU = (108.225, 16.035)  # (lon, lat)

# dev_eui → (kind, seconds since its last uplink or None, the health every reader must show). Ages sit
# minutes away from every threshold, so the few seconds between the readers' "now"s cannot matter.
# water_level reports every 300 s: late after 600 s, silent after 1800 s.
DEVICES: dict[str, tuple[str, int | None, str]] = {
    "00000000000000d1": ("water_level", 60, "reporting"),
    "00000000000000d2": ("water_level", 1200, "late"),
    "00000000000000d3": ("water_level", 7200, "silent"),
    "00000000000000d4": ("water_level", None, "never_seen"),
    # Its own interval (60 s: late after 120 s, silent after 360 s) before its kind's: late, not reporting.
    "00000000000000d5": ("water_level", 240, "late"),
    # Its kind's interval as the database holds it (device_kinds, set to 120 s below: silent after 720 s),
    # not the 600 s the code knew when it was written: silent, not reporting.
    "00000000000000d6": ("temperature_humidity", 900, "silent"),
    # waste_bin reports every 1800 s: late after an hour, silent after three; 90 minutes is late.
    "00000000000000d7": ("waste_bin", 5400, "late"),
    # A 'silence' alert threshold of 900 s for this device: silent at 1200 s (its interval alone says late).
    "00000000000000d8": ("water_level", 1200, "silent"),
}


class _Broadcaster:
    """The slice of MqttBroadcaster the status publisher uses; keeps what it published."""

    connected = True

    def __init__(self) -> None:
        self.published: dict[str, bytes] = {}

    def publish_many(self, messages: list[tuple[str, bytes, bool]], *, qos: int = 0) -> int:
        self.published.update((topic, payload) for topic, payload, _retain in messages)
        return len(messages)

    def retained_topics(self, topic_filter: str) -> set[str] | None:
        return None



@pytest.fixture
def fleet(db_url: str) -> Iterator[str]:
    now = datetime.now(UTC)
    lon, lat = HAI_CHAU
    with psycopg.connect(db_url, autocommit=True) as conn:
        seed_zones(conn, load_default_zones())
        register_devices(conn, [DeviceRecord(dev_eui=eui, name=f"dev {eui[-2:]}", kind=kind, latitude=lat,
                                             longitude=lon) for eui, (kind, _age, _health) in DEVICES.items()])
        ids = dict(conn.execute("SELECT dev_eui, id FROM devices").fetchall())
        for eui, (_kind, age, _health) in DEVICES.items():
            if age is not None:
                insert_uplink(conn, ids[eui], now - timedelta(seconds=age + 3600))  # older history
                insert_uplink(conn, ids[eui], now - timedelta(seconds=age))
        conn.execute("UPDATE devices SET expected_interval_s = 60 WHERE dev_eui = '00000000000000d5'")
        conn.execute("UPDATE device_kinds SET interval_s = 120 WHERE kind = 'temperature_humidity'")
        conn.execute("INSERT INTO alert_thresholds (metric, device_id, alert_above) VALUES ('silence', %s, 900)",
                     (ids["00000000000000d8"],))
        # A kind-wide silence row for a kind none of these devices has changes nothing here.
        conn.execute("INSERT INTO alert_thresholds (metric, kind, alert_above) VALUES ('silence', 'parking', 60)")
    yield db_url


def _api(conn: psycopg.Connection) -> dict[str, str]:
    page = list_devices(conn, DeviceFilters(), None, limit=100, offset=0)
    listed = {d.dev_eui: d.health for d in page.items}
    # The health filter reads the same function, through the query that filters before paging.
    for health in ("reporting", "late", "silent", "never_seen"):
        chosen = list_devices(conn, DeviceFilters(health=health), None, limit=100, offset=0)
        assert {d.dev_eui for d in chosen.items} == {e for e, h in listed.items() if h == health}, health
    return listed


def _feed(url: str) -> tuple[dict[str, str], dict[str, Any]]:
    broadcaster = _Broadcaster()
    publisher = StatusPublisher(url, broadcaster, "ioc/v1")  # type: ignore[arg-type]
    try:
        publisher.tick()
    finally:
        publisher.close()
    statuses, summaries = {}, {}
    for topic, payload in broadcaster.published.items():
        body = json.loads(payload)
        if "/_status/" in topic:
            statuses[body["dev_eui"]] = body["health"]
        elif topic.endswith("/_summary"):
            summaries[body["zone"]] = body["devices"]
    return statuses, summaries


def _boards(conn: psycopg.Connection) -> dict[tuple[str, str], dict[str, str]]:
    """(board, panel) → {dev_eui: state} for every board panel that shows devices with their state. (The
    "Device silent" Grafana rule is retired: the platform's device_silent alarm reads device_health() too.)"""
    time_range = parse_relative("now-6h", datetime.now(UTC))
    seen: dict[tuple[str, str], dict[str, str]] = {}
    for board, case in all_cases():
        if not {"dev_eui", "state"} <= set(case.columns):
            continue
        for eui, (kind, _age, _health) in DEVICES.items():
            choices = {"device": eui, "zone": "hai-chau", "kind": kind}
            variables = sample_variables(conn, board, time_range, choices) if board else []
            for run in run_case(conn, case, time_range, variables):
                for row in run.rows:
                    values = dict(zip(run.columns, row, strict=True))
                    if values["dev_eui"] not in DEVICES:
                        continue
                    seen.setdefault((case.board, case.panel), {})[values["dev_eui"]] = values["state"]
    return seen


def test_api_feed_and_boards_give_every_device_the_same_health(fleet: str) -> None:
    expected = {eui: health for eui, (_kind, _age, health) in DEVICES.items()}
    with psycopg.connect(fleet, autocommit=True) as conn:
        api = _api(conn)
        zones = {z.code: z.devices for z in zone_summaries(conn, None, "hai-chau")}
        boards = _boards(conn)
    feed, summaries = _feed(fleet)
    assert api == expected
    assert feed == expected
    assert boards, "board panels with device states"
    for (board, panel), states in boards.items():
        assert states == {e: h for e, h in expected.items() if e in states}, (board, panel)
        assert len(states) >= 6 or panel == "Late and silent devices", (board, panel, states)
    counts = {h: sum(1 for v in expected.values() if v == h) for h in ("reporting", "late", "silent", "never_seen")}
    assert zones["hai-chau"].model_dump() == {**counts, "total": len(DEVICES)}
    assert summaries["hai-chau"] == {**counts, "total": len(DEVICES)}


def test_device_health_at_a_fixed_time_and_its_thresholds(fleet: str) -> None:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    with psycopg.connect(fleet, autocommit=True) as conn:
        # Kinds the database knows carry the code's factors; a device without a kind gets the defaults.
        register_devices(conn, [DeviceRecord(dev_eui="00000000000000e1", name="no kind", latitude=HAI_CHAU[1],
                                             longitude=HAI_CHAU[0])])
        rules = {r[0]: r[1:] for r in conn.execute(
            """SELECT d.dev_eui, i.interval_s, i.late_after_s, i.silent_after_s FROM devices d
               JOIN device_intervals i ON i.device_id = d.id""").fetchall()}
        assert rules["00000000000000e1"] == (DEFAULT_INTERVAL_S, DEFAULT_INTERVAL_S * LATE_AFTER,
                                             DEFAULT_INTERVAL_S * SILENT_AFTER)
        waste = KINDS["waste_bin"].interval_s
        assert rules["00000000000000d7"] == (waste, waste * LATE_AFTER, waste * SILENT_AFTER)
        assert rules["00000000000000d5"] == (60, 120, 360)
        assert rules["00000000000000d8"] == (300, 600, 900)
        ident = conn.execute("SELECT id FROM devices WHERE dev_eui = '00000000000000e1'").fetchone()
        assert ident is not None
        insert_uplink(conn, ident[0], at - timedelta(seconds=DEFAULT_INTERVAL_S * LATE_AFTER))

        def health(when: datetime) -> tuple[Any, ...] | None:
            return conn.execute("""SELECT health, last_seen_at, uplinks_last_hour FROM device_health(%s)
                                   WHERE device_id = %s""", (when, ident[0])).fetchone()

        # On the threshold still reporting, a microsecond past it late; the same at the silent point.
        tick = timedelta(microseconds=1)
        last = at - timedelta(seconds=DEFAULT_INTERVAL_S * LATE_AFTER)
        assert health(at) == ("reporting", last, 0)
        assert health(at + tick) == ("late", last, 0)
        silent_at = last + timedelta(seconds=DEFAULT_INTERVAL_S * SILENT_AFTER)
        assert health(silent_at)[:1] == ("late",)  # type: ignore[index]
        assert health(silent_at + tick)[:1] == ("silent",)  # type: ignore[index]
        assert health(last + timedelta(minutes=30)) == ("reporting", last, 1)


def test_api_and_boards_give_every_gateway_the_same_status(db_url: str) -> None:
    gateways = {
        # eui: (ChirpStack's state, its sync's age, ChirpStack's last seen age, last uplink age) → status
        "00000000000000f1": (("online", 60, 30, 30), "online"),
        "00000000000000f2": (("offline", 60, 3600, None), "offline"),
        # The sync stopped an hour ago and nothing was heard for two: ChirpStack's "online" is stale.
        "00000000000000f3": (("online", 3600, 3600, 7200), "offline"),
        "00000000000000f4": ((None, None, None, 60), "online"),
        "00000000000000f5": ((None, None, None, 1200), "offline"),
        "00000000000000f6": ((None, None, None, None), "never_seen"),
        "00000000000000f7": (("never_seen", 60, None, None), "never_seen"),
    }
    with psycopg.connect(db_url, autocommit=True) as conn:
        for eui, ((state, synced, cs_seen, seen), _status) in gateways.items():
            def ago(s: int | None) -> str | None:
                return None if s is None else f"{s} seconds"
            conn.execute(
                """INSERT INTO gateways (gateway_eui, chirpstack_state, chirpstack_synced_at,
                                         chirpstack_last_seen_at, last_seen_at)
                   VALUES (%s, %s, now() - %s::interval, now() - %s::interval, now() - %s::interval)""",
                (eui, state, ago(synced), ago(cs_seen), ago(seen)))
        api = {g.gateway_eui: g.state for g in list_gateways(conn, None)}
        time_range = parse_relative("now-1h", datetime.now(UTC))
        board: dict[str, str] = {}
        for b, case in all_cases():
            if case.board == "ioc-network" and case.panel == "Gateways" and "status" in case.columns:
                for run in run_case(conn, case, time_range, sample_variables(conn, b, time_range) if b else []):
                    board.update((r[run.columns.index("gateway_eui")], r[run.columns.index("status")])
                                 for r in run.rows)
    expected = {eui: status for eui, (_row, status) in gateways.items()}
    assert api == expected
    assert board == expected  # the "Gateway offline" Grafana rule is retired: the platform's alarm reads the same
