"""The API under abuse, on a real PostgreSQL: bodies without keys or past their limits, stalled bodies, parallel
imports, an exhausted pool and a database outage, hostile CSV rows, calendar edges, tag floods, decommissioning
and the users CLI. Each test reproduces a finding of issue 10 that the code before it answered badly."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from gateways.local_postgres import free_port
from ioc_core.catalogue import DeviceCatalogue
from ioc_core.settings import ApiSettings
from tests.api_support import HAI_CHAU, SON_TRA, Raw, app_for, device, ingest, key, lpp, raw_request
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
IMPORT = "/api/v1/devices:import"
CSV_HEADER = "dev_eui,name,kind,model,latitude,longitude,description\n"


def _error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] and error["message"]
    return error


def _raw_error(raw: Raw, status: int) -> dict[str, Any]:
    import json

    assert raw.status == status, (raw.status, raw.body[:300])
    assert raw.headers["content-type"] == "application/json"
    error: dict[str, Any] = json.loads(raw.body)["error"]
    return error


def _row(eui: str, name: str = "Bin", where: tuple[float, float] = HAI_CHAU, description: str = "") -> str:
    return f"{eui},{name},waste_bin,ioc-wb100,{where[0]},{where[1]},{description}\n"


def _megabytes(count: int) -> Iterator[bytes]:
    yield b'{"name": "'
    for _ in range(count):
        yield b"x" * MiB


# --- bodies: authenticated before they are read, counted as they stream in ------------------------------------

def test_a_body_without_a_key_is_refused_before_a_byte_of_it_is_read(api_client: TestClient) -> None:
    for path in ("/api/v1/devices", IMPORT, "/api/v1/users"):
        raw = raw_request(api_client, "POST", path, headers={"content-type": "application/json",
                                                         "transfer-encoding": "chunked"}, chunks=_megabytes(50))
        assert _raw_error(raw, 401)["code"] == "unauthorized"
        assert raw.headers["www-authenticate"] == "Bearer"
        assert raw.chunks_read == 0, path  # before: the whole 50 MiB was read and parsed first


def test_a_body_with_an_unknown_key_is_refused_before_it_is_read(api_client: TestClient) -> None:
    raw = raw_request(api_client, "POST", "/api/v1/devices", chunks=_megabytes(20), headers={
        "authorization": "Bearer ioc_deadbeef_not-a-key", "content-type": "application/json",
        "content-length": str(20 * MiB + 10)})
    assert _raw_error(raw, 401)["message"] == "unknown API key" and raw.chunks_read == 0


def test_a_declared_oversized_body_is_413_in_the_error_shape_unread(api_client: TestClient,
                                                                    admin: dict[str, str]) -> None:
    headers = {"authorization": admin["Authorization"], "content-type": "application/json",
               "content-length": str(50 * MiB)}
    raw = raw_request(api_client, "POST", "/api/v1/devices", headers=headers, chunks=_megabytes(50))
    error = _raw_error(raw, 413)
    assert error == {"code": "too_large", "field": "body",
                     "message": "the request body is larger than this route's limit of 65,536 bytes"}
    assert raw.chunks_read == 0 and raw.headers["connection"] == "close"
    # Through the test api_client as well, where the body is all there: the same answer.
    assert _error(api_client.post("/api/v1/devices", headers=admin, content=b"{" + b" " * 70_000 + b"}"),
                  413)["field"] == "body"


def test_a_streamed_body_stops_being_read_at_the_route_limit(api_client: TestClient, admin: dict[str, str]) -> None:
    chunked = {"authorization": admin["Authorization"], "transfer-encoding": "chunked"}
    raw = raw_request(api_client, "POST", "/api/v1/devices", headers={**chunked, "content-type": "application/json"},
                      chunks=(b"x" * 16 * 1024 for _ in range(3200)))  # 50 MiB in 16 KiB pieces
    assert _raw_error(raw, 413)["code"] == "too_large"
    assert raw.chunks_read == 5  # 80 KiB: the first piece past 64 KiB
    # The import route has its own limit, 5 MiB.
    raw = raw_request(api_client, "POST", IMPORT, headers={**chunked, "content-type": "text/csv"},
                      chunks=(CSV_HEADER.encode() if i == 0 else b"x" * MiB for i in range(51)))
    assert "5,242,880 bytes" in _raw_error(raw, 413)["message"]
    assert raw.chunks_read == 6  # the header and five MiB: 57 bytes past the limit


def test_the_body_limits_are_settings(db_url: str) -> None:
    admin = key(db_url, "root", "admin")
    api = ApiSettings(body_max_bytes=2048, import_max_bytes=4096,
                      route_body_max_bytes={"/api/v1/users": 40})
    with TestClient(app_for(db_url, api=api)) as client:
        assert client.post("/api/v1/devices", headers=admin, json=device("00000000000000a1")).status_code == 201
        padded = device("00000000000000a2", description="d" * 900, tags={f"t{i}": "v" * 40 for i in range(25)})
        assert "2,048 bytes" in _error(client.post("/api/v1/devices", headers=admin, json=padded), 413)["message"]
        rows = CSV_HEADER + "".join(_row(f"00000000000001{i:02x}", description="d" * 20) for i in range(60))
        assert len(rows) > 4096
        assert "4,096 bytes" in _error(client.post(IMPORT, headers={**admin, "Content-Type": "text/csv"},
                                                   content=rows), 413)["message"]
        user = {"name": "ops-hai-chau", "role": "operator", "zones": ["hai-chau"]}
        assert "40 bytes" in _error(client.post("/api/v1/users", headers=admin, json=user), 413)["message"]
        assert client.post("/api/v1/users", headers=admin, json={"name": "ops", "role": "operator"}).status_code == 201


def test_a_stalled_body_is_408(db_url: str) -> None:
    admin = key(db_url, "root", "admin")
    with TestClient(app_for(db_url, api=ApiSettings(body_timeout_s=0.3))) as client:
        began = time.monotonic()
        raw = raw_request(client, "POST", IMPORT, pause_s=1.0, chunks=[CSV_HEADER.encode()] * 30, headers={
            "authorization": admin["Authorization"], "content-type": "text/csv", "transfer-encoding": "chunked"})
        assert _raw_error(raw, 408) == {"code": "body_timeout", "field": "body",
                                        "message": "no part of the request body arrived for 0.3 s"}
        assert time.monotonic() - began < 5 and raw.chunks_read == 0


# --- imports: limits while parsing, one at a time per key, each row on its own ---------------------------------

def _sequence(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT last_value FROM devices_id_seq").fetchone()
    assert row is not None
    return int(row[0])


def test_an_import_past_the_row_limit_is_refused_before_anything_is_stored(api_client: TestClient,
                                                                            admin: dict[str, str],
                                                                            db_url: str) -> None:
    api_client.post("/api/v1/devices", headers=admin, json=device("00000000000000a1"))
    before = _sequence(db_url)
    rows = CSV_HEADER + "".join(_row(f"{i:016x}") for i in range(1, 20_002))
    began = time.monotonic()
    response = api_client.post(IMPORT, headers={**admin, "Content-Type": "text/csv"}, content=rows)
    error = _error(response, 413)
    assert error["message"] == "more than 20,000 rows; split the file (nothing was stored)"
    # Not one device was inserted and rolled back (before: 20,000 of them, 39 s, then the 413).
    assert _sequence(db_url) == before
    assert time.monotonic() - began < 15


def test_one_key_runs_one_import_at_a_time_and_the_pool_stays_free(db_url: str) -> None:
    app = app_for(db_url, api=ApiSettings(pool_size=2, pool_timeout_s=1.0))
    tech = key(db_url, "tech-hc", "technician", ["hai-chau"])
    admin = key(db_url, "root", "admin")
    with TestClient(app) as client:
        text = (CSV_HEADER + _row("00000000000000a1") + _row("00000000000000a2")).encode()
        pieces = [text[i:i + 20] for i in range(0, len(text), 20)]
        slow: list[Raw] = []
        upload = threading.Thread(target=lambda: slow.append(raw_request(
            client, "POST", IMPORT, chunks=pieces, pause_s=3.0 / len(pieces),
            headers={"authorization": tech["Authorization"], "content-type": "text/csv",
                     "transfer-encoding": "chunked"})))
        upload.start()
        try:
            wait_for(lambda: client.app.state.imports.running,  # type: ignore[attr-defined]
                     timeout_s=5, what="the slow upload to start its import", interval_s=0.01)
            for _ in range(9):
                busy = client.post(IMPORT, headers={**tech, "Content-Type": "text/csv"},
                                   content=CSV_HEADER + _row("00000000000000b1"))
                assert "this key runs 1 import already" in _error(busy, 429)["message"]
                assert busy.headers["retry-after"] == "10"
            # Others are served: the upload holds no database connection while its body trickles in.
            assert client.get("/api/v1/devices", headers=admin).status_code == 200
            assert client.get("/readyz").status_code == 200
        finally:
            upload.join(30)
        assert slow and slow[0].status == 200 and b'"created":2' in slow[0].body
        assert client.post(IMPORT, headers={**tech, "Content-Type": "text/csv"},
                           content=CSV_HEADER + _row("00000000000000b1")).json()["created"] == 1


def test_a_nul_in_one_csv_row_refuses_that_row_only(api_client: TestClient, admin: dict[str, str]) -> None:
    rows = CSV_HEADER + _row("00000000000000a1") + _row("00000000000000a2", name="Bin\x00B") + \
        _row("00000000000000a3", description="x\x00y") + _row("00000000000000a4")
    response = api_client.post(IMPORT, headers={**admin, "Content-Type": "text/csv"}, content=rows)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["created"] == 2 and report["refused"] == 2
    refused = [(r["row"], r["field"], r["reason"]) for r in report["rows"] if r["result"] == "refused"]
    assert refused == [(3, "name", "a NUL character (0x00) is not allowed"),
                       (4, "description", "a NUL character (0x00) is not allowed")]


def test_a_cell_the_csv_parser_refuses_names_its_row(api_client: TestClient, admin: dict[str, str]) -> None:
    rows = CSV_HEADER + _row("00000000000000a1", description="d" * 200_000) + _row("00000000000000a2")
    response = api_client.post(IMPORT, headers={**admin, "Content-Type": "text/csv"}, content=rows)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["created"] == 1
    assert report["rows"][0] == {"row": 2, "dev_eui": None, "result": "refused", "field": "body",
                                 "reason": "the row cannot be parsed as CSV: field larger than field limit (131072)"}


# --- the database: a short wait for a connection, then 503 with Retry-After ------------------------------------

def test_no_free_connection_is_503_with_retry_after_in_the_error_shape(db_url: str) -> None:
    admin = key(db_url, "root", "admin")
    api = ApiSettings(pool_size=1, pool_timeout_s=0.3, retry_after_s=7)
    with TestClient(app_for(db_url, api=api)) as client:
        pool = client.app.state.pool  # type: ignore[attr-defined]
        pool.wait(5)
        held = pool.getconn()
        try:
            began = time.monotonic()
            for response in (client.get("/api/v1/devices", headers=admin),
                             client.post("/api/v1/devices", headers=admin, json=device("00000000000000a1"))):
                error = _error(response, 503)
                assert error["code"] == "unavailable" and "no database connection within 0.3 s" in error["message"]
                assert response.headers["retry-after"] == "7"
            assert time.monotonic() - began < 5  # before: 10 s, then a plain-text 500
        finally:
            pool.putconn(held)
        response = client.get("/api/v1/devices", headers=admin)
        assert response.status_code == 200, (response.text, pool.get_stats())


def test_a_database_outage_is_503_in_the_error_shape(db_url: str) -> None:
    nowhere = f"postgresql://ioc@127.0.0.1:{free_port()}/ioc"
    app = app_for(nowhere, api=ApiSettings(pool_timeout_s=0.5), catalogue=DeviceCatalogue(), zones=False)
    headers = {"Authorization": "Bearer ioc_deadbeef_whatever"}
    with TestClient(app) as client:
        began = time.monotonic()
        for response in (client.get("/api/v1/devices", headers=headers),
                         client.get("/api/v1/zones/hai-chau", headers=headers),
                         client.post("/api/v1/devices", headers=headers, json=device("00000000000000a1"))):
            assert _error(response, 503)["code"] == "unavailable"
            assert response.headers["retry-after"] == "5"
        assert time.monotonic() - began < 6  # three requests, none waiting the pool's 10 s
        assert client.get("/readyz").status_code == 503


# --- calendar edges, tags, decommissioning ---------------------------------------------------------------------

@pytest.mark.parametrize(("params", "field"), [
    ({"to": "0001-01-01T00:00:00+14:00"}, "to"),
    ({"to": "0001-01-01T12:00:00Z"}, "to"),
    ({"from": "9999-12-31T23:00:00-14:00"}, "from"),
])
def test_measurement_times_outside_the_calendar_are_422_naming_the_field(
        api_client: TestClient, admin: dict[str, str], params: dict[str, str], field: str) -> None:
    api_client.post("/api/v1/devices", headers=admin, json=device("00000000000000a1"))
    response = api_client.get("/api/v1/devices/00000000000000a1/measurements", headers=admin,
                          params={"metric": "temperature", **params})
    assert _error(response, 422)["field"] == field


def test_a_device_carries_at_most_32_tags(api_client: TestClient, admin: dict[str, str]) -> None:
    many = {f"k{i}": "v" for i in range(33)}
    error = _error(api_client.post("/api/v1/devices", headers=admin, json=device("00000000000000a1", tags=many)), 422)
    assert error["field"] == "tags" and "at most 32" in error["message"]
    assert api_client.post("/api/v1/devices", headers=admin,
                       json=device("00000000000000a1", tags=dict(list(many.items())[:32]))).status_code == 201
    patch = api_client.patch("/api/v1/devices/00000000000000a1", headers=admin, json={"tags": many})
    assert _error(patch, 422)["field"] == "tags"
    long_value = api_client.post("/api/v1/devices", headers=admin,
                             json=device("00000000000000a2", tags={"k": "v" * 257}))
    assert _error(long_value, 422)["field"] == "tags.k"


def test_decommissioning_leaves_a_way_back(api_client: TestClient, admin: dict[str, str], db_url: str) -> None:
    stray = "70b3d57ed0054a1f"
    ingest(db_url, [(stray, 1, lpp(24, 55), datetime.now(UTC) - timedelta(minutes=2))])  # enrolled, no zone
    son_tra = key(db_url, "tech-st", "technician", ["son-tra"])
    refused = api_client.delete(f"/api/v1/devices/{stray}", headers=son_tra)
    assert "has no zone yet" in _error(refused, 403)["message"]  # before: retired, and nobody could bring it back
    body = {k: v for k, v in device(stray, where=HAI_CHAU).items() if k != "dev_eui"}
    assert api_client.delete(f"/api/v1/devices/{stray}", headers=admin).status_code == 200
    assert _error(api_client.post(f"/api/v1/devices/{stray}/claim", headers=son_tra, json=body), 403)
    back = api_client.post(f"/api/v1/devices/{stray}/claim", headers=admin, json=body)
    assert back.status_code == 200, back.text
    assert back.json()["status"] == "registered" and back.json()["commissioning"]["decommissioned_at"] is None
    # A registered device in a technician's zone: retired and claimed back by that technician.
    hai_chau = key(db_url, "tech-hc", "technician", ["hai-chau"])
    assert api_client.delete(f"/api/v1/devices/{stray}", headers=hai_chau).status_code == 200
    assert api_client.post(f"/api/v1/devices/{stray}/claim", headers=hai_chau, json=body).status_code == 200
    outside = {**body, "latitude": SON_TRA[0], "longitude": SON_TRA[1]}
    assert api_client.delete(f"/api/v1/devices/{stray}", headers=hai_chau).status_code == 200
    assert _error(api_client.post(f"/api/v1/devices/{stray}/claim", headers=hai_chau, json=outside), 403)
    actions = [a["action"] for a in api_client.get("/api/v1/audit", headers=admin,
                                               params={"entity": "device"}).json()["items"]]
    assert actions == ["decommission", "claim", "decommission", "claim", "decommission"]


# --- the users CLI: one line, never the key's hash -------------------------------------------------------------

@pytest.mark.parametrize("name", ["a b", "[/x]", "x" * 65])
def test_users_create_with_a_bad_name_prints_one_line(db_url: str, name: str) -> None:
    env = {**os.environ, "IOC_DATABASE_URL": db_url, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-m", "ioc_cli", "users", "create", "--name", name, "--role", "admin"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: a user name is 1 to 64 letters"), done.stderr
    assert "Traceback" not in done.stderr and "\\x" not in done.stderr and not done.stdout
