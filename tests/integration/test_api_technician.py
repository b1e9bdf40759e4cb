"""A technician's day through the API: DevEUIs as labels print them, moving zones, recommissioning, CSV mistakes."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from ioc_core.settings import ChirpStackSettings
from tests.api_support import HAI_CHAU, LIEN_CHIEU, SON_TRA, app_for, device, key
from tests.standins.chirpstack import ChirpStackStandIn

pytestmark = pytest.mark.integration

EUI = "a84041000181c9a1"
APP_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def _error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


@pytest.mark.parametrize("written", ["a8:40:41:00:01:81:c9:a1", "A8-40-41-00-01-81-C9-A1", "A840 4100 0181 C9A1",
                                     "a840-4100-0181-c9a1", " A84041000181C9A1 "])
def test_a_dev_eui_as_labels_print_it_is_stored_as_16_hex_digits(api_client: TestClient, admin: dict[str, str],
                                                                 written: str) -> None:
    created = api_client.post("/api/v1/devices", headers=admin,
                          json=device(written, join_eui="70-B3-D5-7E-D0-00-00-00"))
    assert created.status_code == 201, created.text
    assert created.json()["dev_eui"] == EUI and created.json()["join_eui"] == "70b3d57ed0000000"
    path = written.strip().replace(" ", "%20")
    assert api_client.get(f"/api/v1/devices/{path}", headers=admin).json()["dev_eui"] == EUI


@pytest.mark.parametrize(("written", "words"), [
    ("a84041000181c9", "got 14 digits"),
    ("g84041000181c9a1", "'g' is not a hex digit"),
    ("a8.40.41.00.01.81.c9.a1", "'.' is not a hex digit"),
    ("a84041000181c9a1ff", "got 18 digits"),
])
def test_a_bad_dev_eui_says_16_hex_digits_in_the_body_and_the_path(api_client: TestClient, admin: dict[str, str],
                                                                   written: str, words: str) -> None:
    for response in (api_client.post("/api/v1/devices", headers=admin, json=device(written)),
                     api_client.get(f"/api/v1/devices/{written}", headers=admin)):
        error = _error(response, 422)
        assert error["field"] == "dev_eui"
        assert "16 hex digits" in error["message"] and "colons, dashes or spaces" in error["message"]
        assert words in error["message"] and "Value error" not in error["message"]


def test_moving_to_another_zone_with_the_zone_named(api_client: TestClient, admin: dict[str, str], db_url: str) -> None:
    assert api_client.post("/api/v1/devices", headers=admin, json=device(EUI)).status_code == 201
    moved = api_client.patch(f"/api/v1/devices/{EUI}", headers=admin,
                         json={"latitude": LIEN_CHIEU[0], "longitude": LIEN_CHIEU[1], "zone": "Lien-Chieu"})
    assert moved.status_code == 200, moved.text
    assert moved.json()["zone"]["code"] == "lien-chieu"
    assert (moved.json()["latitude"], moved.json()["longitude"]) == LIEN_CHIEU
    # A typo in the coordinates is refused instead of filing the device in the wrong district.
    typo = api_client.patch(f"/api/v1/devices/{EUI}", headers=admin,
                        json={"latitude": SON_TRA[0], "longitude": SON_TRA[1], "zone": "hai-chau"})
    error = _error(typo, 422)
    assert error["field"] == "zone" and "'son-tra', not 'hai-chau'" in error["message"]
    assert "check latitude and longitude" in error["message"]
    # The zone alone is checked against the stored position: it never moves a device by itself.
    alone = _error(api_client.patch(f"/api/v1/devices/{EUI}", headers=admin, json={"zone": "hai-chau"}), 422)
    assert alone["field"] == "zone" and "stored position" in alone["message"]
    assert "send its new latitude and longitude" in alone["message"]
    same = api_client.patch(f"/api/v1/devices/{EUI}", headers=admin, json={"zone": "lien-chieu"})
    assert same.status_code == 200 and same.json()["zone"]["code"] == "lien-chieu"
    unknown = _error(api_client.patch(f"/api/v1/devices/{EUI}", headers=admin, json={"zone": "atlantis"}), 422)
    assert unknown["field"] == "zone" and "no current zone has the code 'atlantis'" in unknown["message"]
    assert _error(api_client.patch(f"/api/v1/devices/{EUI}", headers=admin, json={"zone": "Hải Châu"}), 422)[
        "field"] == "zone"
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("""SELECT changes FROM audit_log WHERE entity = 'device' AND action = 'update'
                               ORDER BY id""").fetchall()
    assert [r[0].get("zone") for r in rows] == [["hai-chau", "lien-chieu"]]  # the refusals changed nothing


def test_the_zone_of_a_device_without_a_position_needs_one(api_client: TestClient, admin: dict[str, str],
                                                           db_url: str) -> None:
    assert api_client.post("/api/v1/devices", headers=admin, json=device(EUI)).status_code == 201
    with psycopg.connect(db_url, autocommit=True) as conn:  # as devices registered before positions were kept
        conn.execute("UPDATE devices SET latitude = NULL, longitude = NULL WHERE dev_eui = %s", (EUI,))
    error = _error(api_client.patch(f"/api/v1/devices/{EUI}", headers=admin, json={"zone": "hai-chau"}), 422)
    assert error["field"] == "latitude" and "has no position" in error["message"]
    placed = api_client.patch(f"/api/v1/devices/{EUI}", headers=admin,
                          json={"zone": "hai-chau", "latitude": HAI_CHAU[0], "longitude": HAI_CHAU[1]})
    assert placed.status_code == 200 and placed.json()["zone"]["code"] == "hai-chau"


def test_a_technician_may_name_only_its_zones(api_client: TestClient, admin: dict[str, str], db_url: str) -> None:
    tech = key(db_url, "tech-hc", "technician", ["hai-chau"])
    assert api_client.post("/api/v1/devices", headers=tech, json=device(EUI)).status_code == 201
    away = api_client.patch(f"/api/v1/devices/{EUI}", headers=tech,
                        json={"latitude": SON_TRA[0], "longitude": SON_TRA[1], "zone": "son-tra"})
    assert "your zones: hai-chau" in _error(away, 403)["message"]


def test_the_openapi_document_explains_moving_and_recommissioning(api_client: TestClient) -> None:
    paths = api_client.get("/openapi.json").json()["paths"]
    patch = paths["/api/v1/devices/{dev_eui}"]["patch"]
    assert "Moving a device to another zone" in patch["description"] and "`zone`" in patch["description"]
    recommission = paths["/api/v1/devices/{dev_eui}/recommission"]["post"]
    assert {"200", "403", "404", "409", "422"} <= set(recommission["responses"])
    assert "decommissioned" in paths["/api/v1/devices"]["post"]["responses"]["409"]["description"]


def test_recommissioning_a_decommissioned_device(api_client: TestClient, admin: dict[str, str], db_url: str) -> None:
    tech = key(db_url, "tech-hc", "technician", ["hai-chau"])
    assert api_client.post("/api/v1/devices", headers=tech, json=device(EUI, tags={"pole": "7"})).status_code == 201
    gone = api_client.delete(f"/api/v1/devices/{EUI}", headers=tech, params={"reason": "pole knocked down"})
    assert gone.status_code == 200
    again = _error(api_client.post("/api/v1/devices", headers=tech, json=device(EUI)), 409)
    assert again["field"] == "dev_eui" and "decommissioned" in again["message"]
    assert f"/api/v1/devices/{EUI}/recommission" in again["message"]
    assert f"ioc devices recommission {EUI}" in again["message"]
    assert _error(api_client.post(f"/api/v1/devices/{EUI}/recommission", headers=key(db_url, "ops", "operator"),
                              json={}), 403)
    elsewhere = api_client.post(f"/api/v1/devices/{EUI}/recommission", headers=tech,
                            json={"latitude": SON_TRA[0], "longitude": SON_TRA[1]})
    assert "your zones: hai-chau" in _error(elsewhere, 403)["message"]
    back = api_client.post(f"/api/v1/devices/{EUI.upper()}/recommission", headers=tech,
                       json={"reason": "pole rebuilt", "zone": "hai-chau"})
    assert back.status_code == 200, back.text
    body = back.json()
    assert body["status"] == "registered" and body["commissioning"]["decommissioned_at"] is None
    assert body["tags"] == {"pole": "7"} and body["zone"]["code"] == "hai-chau"
    assert "recommission" in _error(api_client.post(f"/api/v1/devices/{EUI}/recommission", headers=tech), 409)[
        "message"]
    assert _error(api_client.post("/api/v1/devices/0000000000000bad/recommission", headers=tech), 404)
    audit = api_client.get("/api/v1/audit", headers=admin, params={"entity": "device"}).json()["items"]
    assert [a["action"] for a in audit] == ["recommission", "decommission", "create"]
    assert audit[0]["actor"] == "tech-hc" and audit[0]["changes"]["reason"] == "pole rebuilt"
    assert audit[0]["changes"]["status"] == ["decommissioned", "registered"]


def test_recommissioning_at_a_new_place_without_a_body(api_client: TestClient, admin: dict[str, str]) -> None:
    api_client.post("/api/v1/devices", headers=admin, json=device(EUI))
    api_client.delete(f"/api/v1/devices/{EUI}", headers=admin)
    moved = api_client.post(f"/api/v1/devices/{EUI}/recommission", headers=admin,
                        json={"latitude": LIEN_CHIEU[0], "longitude": LIEN_CHIEU[1], "zone": "lien-chieu"})
    assert moved.status_code == 200 and moved.json()["zone"]["code"] == "lien-chieu"
    api_client.delete(f"/api/v1/devices/{EUI}", headers=admin)
    plain = api_client.post(f"/api/v1/devices/{EUI}/recommission", headers=admin)  # no body at all
    assert plain.status_code == 200, plain.text
    assert plain.json()["zone"]["code"] == "lien-chieu"


def test_recommissioning_with_chirpstack_needs_the_keys_again(db_url: str) -> None:
    with ChirpStackStandIn() as standin:
        target = {"application_id": standin.add_application("dn"),
                  "device_profile_id": standin.add_device_profile("TH 1.0.3", "1.0.3")}
        chirpstack = ChirpStackSettings(api=standin.target,  # type: ignore[arg-type]
                                        token=standin.token, profiles={"*": target})
        _recommission_with_keys(db_url, chirpstack)
        assert EUI in standin.devices() and standin.keys(EUI) is not None


def _recommission_with_keys(db_url: str, chirpstack: ChirpStackSettings) -> None:
    admin = key(db_url, "root", "admin")
    with TestClient(app_for(db_url, chirpstack=chirpstack)) as client:
        assert client.post("/api/v1/devices", headers=admin, json=device(EUI, app_key=APP_KEY)).status_code == 201
        assert client.delete(f"/api/v1/devices/{EUI}", headers=admin).status_code == 200
        error = _error(client.post(f"/api/v1/devices/{EUI}/recommission", headers=admin, json={}), 422)
        assert error["field"] == "app_key" and "forgot this device" in error["message"]
        back = client.post(f"/api/v1/devices/{EUI}/recommission", headers=admin, json={"app_key": APP_KEY})
        assert back.status_code == 200, back.text
        assert back.json()["provisioning"]["state"] == "provisioned"
        assert APP_KEY not in back.text
    with psycopg.connect(db_url) as conn:
        stored = conn.execute("SELECT count(*) FROM device_keys").fetchone()
        logged = conn.execute("SELECT changes::text FROM audit_log WHERE action = 'recommission'").fetchone()
    assert stored == (0,) and logged is not None and APP_KEY not in logged[0]


def test_re_registering_an_enrolled_dev_eui_says_claim_it(api_client: TestClient, admin: dict[str, str],
                                                          db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO devices (dev_eui, name, status) VALUES (%s, 'enrolled', 'unregistered')", (EUI,))
    error = _error(api_client.post("/api/v1/devices", headers=admin, json=device(EUI)), 409)
    assert "unregistered" in error["message"] and "claim it" in error["message"]
    assert "claim it" in _error(api_client.post(f"/api/v1/devices/{EUI}/recommission", headers=admin), 409)["message"]


CSV_HEADER = "dev_eui,name,kind,model,latitude,longitude\n"


def _row(eui: str, name: str, where: tuple[float, float] = HAI_CHAU) -> str:
    return f"{eui},{name},waste_bin,ioc-wb100,{where[0]},{where[1]}\n"


def test_an_unterminated_quote_names_its_line_and_cell(api_client: TestClient, admin: dict[str, str]) -> None:
    csv_text = (CSV_HEADER + _row("0000000000000001", "Bin A") + _row("0000000000000002", '"Bin B')
                + _row("0000000000000003", "Bin C") + "\n" + _row("0000000000000004", "Bin D"))
    report = api_client.post("/api/v1/devices:import", headers={**admin, "Content-Type": "text/csv"},
                         content=csv_text).json()
    by_row = {r["row"]: r for r in report["rows"]}
    assert sorted(by_row) == [2, 3, 4, 6] and report["created"] == 3
    assert by_row[3]["result"] == "refused" and by_row[3]["field"] == "name"
    assert by_row[3]["dev_eui"] == "0000000000000002"
    assert 'line 3: the quote (") that opens the name cell' in by_row[3]["reason"]
    assert "never closed" in by_row[3]["reason"] and "Field required" not in by_row[3]["reason"]
    assert by_row[4]["result"] == by_row[6]["result"] == "created"
    header = api_client.post("/api/v1/devices:import", headers={**admin, "Content-Type": "text/csv"},
                         content='dev_eui,"name,kind\n')
    assert "header (line 1) has a quote" in _error(header, 422)["message"]


def test_a_quote_closed_lines_later_is_pointed_out(api_client: TestClient, admin: dict[str, str]) -> None:
    # Two stray quotes pair up: the cell runs from the first to the second, and the row says where.
    csv_text = (CSV_HEADER + _row("0000000000000001", '"Bin A') + _row("0000000000000002", "Bin B")
                + _row("0000000000000003", 'Bin C"'))
    report = api_client.post("/api/v1/devices:import", headers={**admin, "Content-Type": "text/csv"},
                         content=csv_text).json()
    assert report["created"] == 0 and len(report["rows"]) == 1
    assert "runs from line 2 to line 4" in report["rows"][0]["reason"]


def test_a_dev_eui_twice_in_one_file_is_named_as_a_repeat(api_client: TestClient, admin: dict[str, str]) -> None:
    csv_text = (CSV_HEADER + _row("0000000000000001", "Bin A") + _row("00:00:00:00:00:00:00:02", "Bin B")
                + _row("0000-0000-0000-0001", "Bin A again") + _row("0000000000000002", "Bin B again"))
    headers = {**admin, "Content-Type": "text/csv"}
    for dry_run in (True, False):
        report = api_client.post("/api/v1/devices:import", headers=headers, params={"dry_run": dry_run},
                             content=csv_text).json()
        by_row = {r["row"]: r for r in report["rows"]}
        assert [by_row[n]["result"] for n in (2, 3)] == ["valid" if dry_run else "created"] * 2
        assert by_row[4]["field"] == "dev_eui" and by_row[4]["dev_eui"] == "0000000000000001"
        assert "repeated in this file (line 2)" in by_row[4]["reason"]
        assert "repeated in this file (line 3)" in by_row[5]["reason"]
        assert "exists already" not in by_row[4]["reason"]


def test_importing_a_decommissioned_dev_eui_says_recommission(api_client: TestClient, admin: dict[str, str]) -> None:
    api_client.post("/api/v1/devices", headers=admin, json=device(EUI))
    api_client.delete(f"/api/v1/devices/{EUI}", headers=admin)
    report = api_client.post("/api/v1/devices:import", headers={**admin, "Content-Type": "text/csv"},
                         content=CSV_HEADER + _row(EUI.upper(), "Bin")).json()
    assert "decommissioned" in report["rows"][0]["reason"] and "recommission" in report["rows"][0]["reason"]
