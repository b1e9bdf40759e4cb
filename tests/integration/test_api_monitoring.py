"""Monitoring reads on data that went through the real ingest batch path: zones, device overview, series."""

from __future__ import annotations

import base64
import csv
import io
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from gateways.mqtt import InboundMessage
from ingest.codecs.library import CodecLibrary
from ingest.processor import BatchProcessor
from tests.api_support import HAI_CHAU, SON_TRA, device, ingest, key, lpp
from tests.events import malformed

pytestmark = [pytest.mark.integration, pytest.mark.both_modes]

NOW = datetime.now(UTC).replace(microsecond=0)
LAST = NOW - timedelta(minutes=2)
"""a1's last frame; it reports every 10 minutes, so any 30-minute window holds exactly 3 of its frames."""


@pytest.fixture(autouse=True)
def _now() -> None:
    """NOW as each test starts: the API counts against the server's clock ("the last hour"), and in a long run a
    time taken at import is minutes old by the time these tests run, pushing the oldest frames out of windows."""
    global NOW, LAST
    NOW = datetime.now(UTC).replace(microsecond=0)
    LAST = NOW - timedelta(minutes=2)


@pytest.fixture
def fleet(api_client: TestClient, admin: dict[str, str], db_url: str) -> dict[str, Any]:
    """Three sensors in Hải Châu (one silent, one never seen) and one in Sơn Trà, with 3 days of frames."""
    for eui, where in (("00000000000000a1", HAI_CHAU), ("00000000000000a2", HAI_CHAU),
                       ("00000000000000a3", HAI_CHAU), ("00000000000000b1", SON_TRA)):
        assert api_client.post("/api/v1/devices", headers=admin, json=device(eui, where)).status_code == 201
    frames: list[Any] = []
    # a1: every 10 minutes for 3 days (432 frames), fCnt 5 and 6 lost, temperatures 20..29.9
    f_cnt = 0
    for i in range(432):
        f_cnt += 1
        if f_cnt in (5, 6):
            f_cnt = 7
        when = LAST - timedelta(minutes=10 * (431 - i))
        frames.append(("00000000000000a1", f_cnt, lpp(20 + (i % 100) / 10, 50), when, -80 - i % 20))
    # a2: last heard 3 hours ago
    frames.append(("00000000000000a2", 1, lpp(31, 80), NOW - timedelta(hours=2, minutes=30)))  # silent
    # b1: reporting, hot
    frames.append(("00000000000000b1", 1, lpp(35, 90), datetime.now(UTC) - timedelta(minutes=3)))
    ingest(db_url, frames)
    return {"a1_frames": 432}


def test_zone_summaries_count_devices_by_health_and_show_key_values(api_client: TestClient, admin: dict[str, str],
                                                                    fleet: dict[str, Any]) -> None:
    response = api_client.get("/api/v1/zones", headers=admin)
    assert response.status_code == 200, response.text
    zones = {z["code"]: z for z in response.json()}
    assert len(zones) == 7 and zones["hai-chau"]["name"] == "Hải Châu" and zones["hai-chau"]["approximate"]
    hai_chau = zones["hai-chau"]
    assert hai_chau["devices"] == {"reporting": 1, "late": 0, "silent": 1, "never_seen": 1, "total": 3}
    assert hai_chau["uplinks_last_hour"] == 6  # a1 every 10 minutes
    values = {v["metric"]: v for v in hai_chau["key_values"]}
    assert set(values) == {"temperature", "humidity"}
    assert values["temperature"]["aggregate"] == "mean" and 20 <= values["temperature"]["value"] < 30
    son_tra = zones["son-tra"]
    assert son_tra["devices"]["reporting"] == 1 and son_tra["uplinks_last_hour"] == 1
    assert {v["metric"]: v["value"] for v in son_tra["key_values"]}["temperature"] == pytest.approx(35.0)
    assert zones["cam-le"]["devices"]["total"] == 0 and zones["cam-le"]["key_values"] == []


def test_district_operators_see_only_their_zone(api_client: TestClient, db_url: str, fleet: dict[str, Any]) -> None:
    district = key(db_url, "ops-son-tra", "operator", ["son-tra"])
    assert [z["code"] for z in api_client.get("/api/v1/zones", headers=district).json()] == ["son-tra"]
    assert api_client.get("/api/v1/zones/son-tra", headers=district).json()["devices"]["total"] == 1
    assert api_client.get("/api/v1/zones/hai-chau", headers=district).status_code == 403
    assert api_client.get("/api/v1/zones/atlantis", headers=district).status_code == 404
    assert api_client.get("/api/v1/zones/HAI CHAU", headers=district).status_code == 422
    developer = key(db_url, "dev", "developer")
    assert api_client.get("/api/v1/zones", headers=developer).status_code == 403


def test_device_overview_shows_latest_values_radio_and_frame_loss(api_client: TestClient, admin: dict[str, str],
                                                                 fleet: dict[str, Any]) -> None:
    response = api_client.get("/api/v1/devices/00000000000000a1/overview", headers=admin, params={"hours": 72})
    assert response.status_code == 200, response.text
    body = response.json()
    latest = {v["metric"]: v for v in body["latest"]}
    assert set(latest) == {"temperature", "humidity"} and latest["humidity"]["value"] == 50
    assert latest["temperature"]["quality"] == "good" and latest["temperature"]["unit"] == "Cel"
    loss = body["frame_loss"]
    assert loss["received"] == 432 and loss["lost"] == 2 and loss["counter_resets"] == 0
    assert loss["loss_ratio"] == pytest.approx(2 / 434)
    assert 72 <= len(body["radio"]) <= 73 and all(h["uplinks"] <= 6 for h in body["radio"])
    assert body["radio"][-1]["rssi_min"] <= body["radio"][-1]["rssi_avg"] <= -80
    assert body["battery"] == {"percent": None, "voltage": None, "time": None, "source": "none"}
    assert body["device"]["commissioning"]["stage"] == "commissioned" and body["decode_errors_24h"] == 0


def test_series_use_the_rollup_for_hours_and_the_raw_table_for_minutes(api_client: TestClient, admin: dict[str, str],
                                                                       fleet: dict[str, Any]) -> None:
    start, end = NOW - timedelta(days=3), NOW + timedelta(hours=1)
    params = {"metric": "temperature", "from": start.isoformat(), "to": end.isoformat()}
    hourly = api_client.get("/api/v1/devices/00000000000000a1/measurements", headers=admin, params=params).json()
    assert hourly["bucket"] == "1h" and hourly["source"] == "rollup_device_hourly" and hourly["unit"] == "Cel"
    assert sum(p["n"] for p in hourly["points"]) == 432
    assert all(p["min"] <= p["mean"] <= p["max"] for p in hourly["points"])
    raw = api_client.get("/api/v1/devices/00000000000000a1/measurements", headers=admin,
                     params={**params, "bucket": "raw"}).json()
    assert raw["source"] == "measurements" and len(raw["points"]) == 432
    by_hour: dict[datetime, list[float]] = {}
    for p in raw["points"]:
        by_hour.setdefault(datetime.fromisoformat(p["time"]).replace(minute=0, second=0), []).append(p["mean"])
    assert {datetime.fromisoformat(p["time"]): pytest.approx(p["mean"]) for p in hourly["points"]} == {
        hour: pytest.approx(sum(v) / len(v)) for hour, v in by_hour.items()}
    daily = api_client.get("/api/v1/devices/00000000000000a1/measurements", headers=admin,
                       params={**params, "bucket": "1d"}).json()
    assert sum(p["n"] for p in daily["points"]) == 432, daily
    assert all(datetime.fromisoformat(p["time"]).hour == 17 for p in daily["points"])  # midnight in Da Nang
    half_hour = LAST.replace(minute=LAST.minute // 30 * 30, second=0)
    fine = api_client.get("/api/v1/devices/00000000000000a1/measurements", headers=admin,
                      params={"metric": "temperature", "bucket": "30m",
                              "from": (half_hour - timedelta(hours=3)).isoformat(),
                              "to": half_hour.isoformat()}).json()
    assert fine["source"] == "measurements" and all(p["n"] == 3 for p in fine["points"]) and len(fine["points"]) == 6


def test_series_as_csv_and_its_errors(api_client: TestClient, admin: dict[str, str], db_url: str,
                                      fleet: dict[str, Any]) -> None:
    params = {"metric": "humidity", "from": (NOW - timedelta(days=1)).isoformat(), "format": "csv"}
    response = api_client.get("/api/v1/devices/00000000000000a1/measurements", headers=admin, params=params)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert rows and rows[0].keys() == {"time", "metric", "unit", "n", "mean", "min", "max"}
    assert {r["metric"] for r in rows} == {"humidity"} and {r["unit"] for r in rows} == {"%RH"}
    accept = api_client.get("/api/v1/devices/00000000000000a1/measurements", params={"metric": "humidity"},
                        headers={**admin, "Accept": "text/csv"})
    assert accept.headers["content-type"].startswith("text/csv")
    url = "/api/v1/devices/00000000000000a1/measurements"
    assert api_client.get(url, headers=admin, params={"metric": "unobtainium"}).json()["error"]["field"] == "metric"
    assert api_client.get(url, headers=admin).status_code == 422
    backwards = {"metric": "humidity", "from": NOW.isoformat(), "to": (NOW - timedelta(hours=1)).isoformat()}
    assert api_client.get(url, headers=admin, params=backwards).json()["error"]["field"] == "to"
    too_many = {"metric": "humidity", "bucket": "1m", "from": "2020-01-01T00:00:00Z"}
    assert api_client.get(url, headers=admin, params=too_many).json()["error"]["field"] == "bucket"
    district = key(db_url, "ops-son-tra", "operator", ["son-tra"])
    assert api_client.get(url, headers=district, params={"metric": "humidity"}).status_code == 403


def test_gateways_show_the_devices_they_hear(api_client: TestClient, admin: dict[str, str], db_url: str,
                                             fleet: dict[str, Any]) -> None:
    ingest(db_url, [("00000000000000b1", 2, lpp(35, 90), datetime.now(UTC) - timedelta(minutes=1), -112)],
           gateway="0016c001f153a14d")
    gateways = {g["gateway_eui"]: g for g in api_client.get("/api/v1/gateways", headers=admin).json()}
    assert set(gateways) == {"0016c001f153a14c", "0016c001f153a14d"}
    main = gateways["0016c001f153a14c"]
    assert main["state"] == "online" and main["devices_heard"] == 2 and main["uplinks"] == 7
    assert gateways["0016c001f153a14d"]["rssi_avg"] == -112
    detail = api_client.get("/api/v1/gateways/0016c001f153a14c", headers=admin, params={"hours": 72}).json()
    heard = {d["dev_eui"]: d for d in detail["devices"]}
    assert set(heard) == {"00000000000000a1", "00000000000000a2", "00000000000000b1"}
    assert heard["00000000000000a1"]["uplinks"] == 432 and heard["00000000000000a1"]["rssi_avg"] == pytest.approx(
        sum(-80 - i % 20 for i in range(432)) / 432)
    assert detail["devices"][0]["dev_eui"] == "00000000000000a1"  # strongest first
    assert api_client.get("/api/v1/gateways/ffffffffffffffff", headers=admin).status_code == 404
    district = key(db_url, "ops-son-tra", "operator", ["son-tra"])
    scoped = api_client.get("/api/v1/gateways/0016c001f153a14c", headers=district, params={"hours": 72}).json()
    assert [d["dev_eui"] for d in scoped["devices"]] == ["00000000000000b1"]


def test_dead_letters_are_for_admins(api_client: TestClient, admin: dict[str, str], db_url: str) -> None:
    processor = BatchProcessor(db_url, CodecLibrary.discover())
    try:
        topic, payload = malformed(7)
        processor.process([InboundMessage(topic, payload, mid=1, received_at=time.time(), session=0,
                                          duplicate=False)])
    finally:
        processor.close()
    page = api_client.get("/api/v1/dead-letters", headers=admin).json()
    assert page["total_open"] == 1 and page["items"][0]["stage"] == "parse"
    assert base64.b64decode(page["items"][0]["payload_base64"]) == payload
    assert api_client.get("/api/v1/dead-letters", headers=admin, params={"stage": "decode"}).json()["items"] == []
    operator = key(db_url, "ops", "operator")
    assert api_client.get("/api/v1/dead-letters", headers=operator).status_code == 403
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM dead_letters").fetchone() == (1,)
