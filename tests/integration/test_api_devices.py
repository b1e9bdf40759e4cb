"""The device registry through the API on a real PostgreSQL: validation, zones, roles, import, claim, audit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.api_support import HAI_CHAU, LIEN_CHIEU, SON_TRA, device, ingest, key, lpp

pytestmark = [pytest.mark.integration, pytest.mark.both_modes]

APP_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def _error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


def test_register_derives_the_zone_and_never_returns_the_key(api_client: TestClient, admin: dict[str, str],
                                                              db_url: str) -> None:
    response = api_client.post("/api/v1/devices", headers=admin,
                           json=device("A84041000181C9A1", app_key=APP_KEY.upper(), join_eui="70B3D57ED0000000"))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["dev_eui"] == "a84041000181c9a1" and body["join_eui"] == "70b3d57ed0000000"
    assert body["zone"] == {"code": "hai-chau", "name": "Hải Châu"}
    assert body["codec_id"] == "cayenne-lpp" and body["expected_interval_s"] == 600
    assert body["status"] == "registered" and body["health"] == "never_seen"
    assert body["commissioning"]["stage"] == "registered" and body["commissioning"]["registered_at"]
    assert body["provisioning"]["state"] == "not_configured"
    assert APP_KEY not in response.text.lower() and "app_key" not in body
    again = api_client.get("/api/v1/devices/a84041000181c9a1", headers=admin)
    assert again.json() == body
    with psycopg.connect(db_url) as conn:
        changes = conn.execute("SELECT changes::text FROM audit_log WHERE entity = 'device'").fetchone()
        stored_keys = conn.execute("SELECT count(*) FROM device_keys").fetchone()
    assert changes is not None and APP_KEY not in changes[0].lower() and '"app_key": "***"' in changes[0]
    assert stored_keys == (0,)  # without ChirpStack there is nowhere to put it, so it is not kept


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"dev_eui": "a84041000181c9"}, "dev_eui", "16 hex digits"),
        ({"dev_eui": "g84041000181c9a1"}, "dev_eui", "16 hex digits"),
        ({"join_eui": "70b3d57ed000000"}, "join_eui", "16 hex digits"),
        ({"app_key": "00112233445566778899aabbccddeeZZ"}, "app_key", "32 hexadecimal digits"),
        ({"app_key": "0011"}, "app_key", "32 hexadecimal digits"),
        ({"latitude": 10.77, "longitude": 106.70}, "latitude", "outside the city area"),
        ({"latitude": 91}, "latitude", "less than or equal to 90"),
        ({"model": "acme-x1"}, "model", "unknown to every codec"),
        ({"codec_id": "no-such-codec"}, "codec_id", "does not exist"),
        ({"kind": "volcano"}, "kind", "Input should be"),
        ({"name": "  "}, "name", "at least 1 character"),
        ({"colour": "red"}, "colour", "Extra inputs"),
    ],
)
def test_bad_fields_are_422_naming_the_field(api_client: TestClient, admin: dict[str, str], change: dict[str, Any],
                                            field: str, words: str) -> None:
    body = {**device("a84041000181c9a1"), **change}
    response = api_client.post("/api/v1/devices", headers=admin, json=body)
    error = _error(response, 422)
    assert error["field"] == field and words in error["message"]
    if "app_key" in change:
        assert change["app_key"] not in response.text  # a rejected key is not echoed either


def test_duplicate_dev_eui_is_409(api_client: TestClient, admin: dict[str, str]) -> None:
    assert api_client.post("/api/v1/devices", headers=admin, json=device("a84041000181c9a1")).status_code == 201
    error = _error(api_client.post("/api/v1/devices", headers=admin, json=device("A84041000181C9A1")), 409)
    assert error["field"] == "dev_eui" and "exists already" in error["message"]


def test_unknown_device_is_404_and_a_bad_dev_eui_in_the_path_is_422(api_client: TestClient,
                                                                      admin: dict[str, str]) -> None:
    assert _error(api_client.get("/api/v1/devices/0000000000000bad", headers=admin), 404)["field"] == "dev_eui"
    assert _error(api_client.get("/api/v1/devices/xyz", headers=admin), 422)["field"] == "dev_eui"


def test_moving_a_device_re_derives_its_zone(api_client: TestClient, admin: dict[str, str], db_url: str) -> None:
    api_client.post("/api/v1/devices", headers=admin, json=device("a84041000181c9a1"))
    moved = api_client.patch("/api/v1/devices/a84041000181c9a1", headers=admin,
                         json={"latitude": LIEN_CHIEU[0], "longitude": LIEN_CHIEU[1], "name": "TH moved"})
    assert moved.status_code == 200, moved.text
    assert moved.json()["zone"]["code"] == "lien-chieu" and moved.json()["name"] == "TH moved"
    assert moved.json()["public"] is True
    private = api_client.patch("/api/v1/devices/a84041000181c9a1", headers=admin, json={"public": False})
    assert private.json()["public"] is False
    half = api_client.patch("/api/v1/devices/a84041000181c9a1", headers=admin, json={"latitude": HAI_CHAU[0]})
    assert _error(half, 422)["field"] == "longitude"
    outside = api_client.patch("/api/v1/devices/a84041000181c9a1", headers=admin,
                           json={"latitude": 21.03, "longitude": 105.85})
    assert _error(outside, 422)["field"] == "latitude"
    with psycopg.connect(db_url) as conn:
        row = conn.execute("""SELECT changes FROM audit_log WHERE entity = 'device' AND action = 'update'""").fetchone()
    assert row is not None and row[0]["zone"] == ["hai-chau", "lien-chieu"]
    assert row[0]["name"] == ["TH c9a1", "TH moved"]


def test_listing_filters_and_pages(api_client: TestClient, admin: dict[str, str], db_url: str) -> None:
    for i in range(7):
        where = HAI_CHAU if i < 4 else SON_TRA
        body = device(f"00000000000000{i:02x}", where)
        if i == 6:
            body.update(kind="water_level", model="ioc-wl100")
        assert api_client.post("/api/v1/devices", headers=admin, json=body).status_code == 201
    now = datetime.now(UTC)
    # The TH100's interval is 10 min: late after 20 min, silent after an hour.
    ingest(db_url, [("0000000000000000", 1, lpp(25, 60), now - timedelta(minutes=5)),
                    ("0000000000000001", 1, lpp(25, 60), now - timedelta(minutes=30)),
                    ("0000000000000002", 1, lpp(25, 60), now - timedelta(hours=3))])

    def eui_list(**params: Any) -> list[str]:
        response = api_client.get("/api/v1/devices", headers=admin, params=params)
        assert response.status_code == 200, response.text
        return [d["dev_eui"] for d in response.json()["items"]]

    assert eui_list(zone="son-tra") == ["0000000000000004", "0000000000000005", "0000000000000006"]
    assert eui_list(kind="water_level") == ["0000000000000006"]
    assert eui_list(model="ioc-wl100") == ["0000000000000006"]
    assert eui_list(health="reporting") == ["0000000000000000"]
    assert eui_list(health="late") == ["0000000000000001"]
    assert eui_list(health="silent") == ["0000000000000002"]
    assert eui_list(health="never_seen", zone="hai-chau") == ["0000000000000003"]
    assert eui_list(seen_after=(now - timedelta(minutes=10)).isoformat()) == ["0000000000000000"]
    before = eui_list(seen_before=(now - timedelta(hours=1)).isoformat())
    assert before[:1] == ["0000000000000002"] and "0000000000000000" not in before  # then the never seen
    assert eui_list(q="TH 0003") == ["0000000000000003"]
    page = api_client.get("/api/v1/devices", headers=admin, params={"limit": 3, "offset": 3}).json()
    assert page["total"] == 7 and [d["dev_eui"][-1] for d in page["items"]] == ["3", "4", "5"]
    beyond = api_client.get("/api/v1/devices", headers=admin, params={"limit": 3, "offset": 30}).json()
    assert beyond["items"] == [] and beyond["total"] == 7
    assert eui_list(status="decommissioned") == []
    assert _error(api_client.get("/api/v1/devices", headers=admin, params={"health": "sleepy"}),
                  422)["field"] == "health"
    assert _error(api_client.get("/api/v1/devices", headers=admin, params={"limit": 0}), 422)["field"] == "limit"


def test_technicians_work_only_in_their_zones(api_client: TestClient, admin: dict[str, str], db_url: str) -> None:
    tech = key(db_url, "tech-hc", "technician", ["hai-chau"])
    created = api_client.post("/api/v1/devices", headers=tech, json=device("00000000000000a1"))
    assert created.status_code == 201, created.text
    error = _error(api_client.post("/api/v1/devices", headers=tech, json=device("00000000000000a2", SON_TRA)), 403)
    assert "son-tra" in error["message"] and "hai-chau" in error["message"]
    away = api_client.patch("/api/v1/devices/00000000000000a1", headers=tech,
                        json={"latitude": SON_TRA[0], "longitude": SON_TRA[1]})
    assert _error(away, 403)["code"] == "forbidden"
    assert api_client.post("/api/v1/devices", headers=admin,
                           json=device("00000000000000b1", SON_TRA)).status_code == 201
    assert _error(api_client.get("/api/v1/devices/00000000000000b1", headers=tech), 403)
    assert _error(api_client.delete("/api/v1/devices/00000000000000b1", headers=tech), 403)
    listed = api_client.get("/api/v1/devices", headers=tech).json()
    assert [d["dev_eui"] for d in listed["items"]] == ["00000000000000a1"]
    nobody = key(db_url, "tech-none", "technician")
    assert "no zones" in _error(api_client.post("/api/v1/devices", headers=nobody, json=device("00000000000000a3")),
                                403)["message"]


def test_operators_read_their_zones_and_developers_read_no_registry(api_client: TestClient, admin: dict[str, str],
                                                                    db_url: str) -> None:
    api_client.post("/api/v1/devices", headers=admin, json=device("00000000000000a1"))
    api_client.post("/api/v1/devices", headers=admin, json=device("00000000000000b1", SON_TRA))
    city = key(db_url, "ops-city", "operator")
    district = key(db_url, "ops-son-tra", "operator", ["son-tra"])
    developer = key(db_url, "dev-1", "developer")
    assert api_client.get("/api/v1/devices", headers=city).json()["total"] == 2
    assert [d["dev_eui"] for d in api_client.get("/api/v1/devices", headers=district).json()["items"]] == [
        "00000000000000b1"]
    assert _error(api_client.get("/api/v1/devices/00000000000000a1", headers=district), 403)
    assert "may not change devices" in _error(
        api_client.post("/api/v1/devices", headers=city, json=device("00000000000000c1")), 403)["message"]
    assert "open data" in _error(api_client.get("/api/v1/devices", headers=developer), 403)["message"]
    assert _error(api_client.get("/api/v1/devices"), 401)["code"] == "unauthorized"


def test_csv_import_reports_every_row(api_client: TestClient, admin: dict[str, str], db_url: str) -> None:
    tech = key(db_url, "tech-hc", "technician", ["hai-chau"])
    api_client.post("/api/v1/devices", headers=admin, json=device("00000000000000ff"))
    csv_text = (
        "dev_eui,name,kind,model,latitude,longitude,app_key,tags\n"
        f"0000000000000001,Bin A,waste_bin,ioc-wb100,{HAI_CHAU[0]},{HAI_CHAU[1]},,route=r1;side=east\n"
        f"00000000000000zz,Bad EUI,waste_bin,ioc-wb100,{HAI_CHAU[0]},{HAI_CHAU[1]},,\n"
        f"0000000000000003,Far,waste_bin,ioc-wb100,{SON_TRA[0]},{SON_TRA[1]},,\n"
        f"0000000000000004,Nowhere,waste_bin,ioc-wb100,10.0,106.0,,\n"
        f"0000000000000005,No model,waste_bin,acme,{HAI_CHAU[0]},{HAI_CHAU[1]},,\n"
        f"00000000000000ff,Again,waste_bin,ioc-wb100,{HAI_CHAU[0]},{HAI_CHAU[1]},,\n"
        f"0000000000000007,Bad key,waste_bin,ioc-wb100,{HAI_CHAU[0]},{HAI_CHAU[1]},abc,\n"
        f"0000000000000008,Bin B,waste_bin,ioc-wb100,{HAI_CHAU[0]},{HAI_CHAU[1]},,\n"
    )
    headers = {**tech, "Content-Type": "text/csv"}
    dry = api_client.post("/api/v1/devices:import", headers=headers, params={"dry_run": True}, content=csv_text)
    assert dry.status_code == 200, dry.text
    assert dry.json()["created"] == 0 and [r["result"] for r in dry.json()["rows"]].count("valid") == 2
    assert api_client.get("/api/v1/devices", headers=admin).json()["total"] == 1  # the dry run stored nothing
    report = api_client.post("/api/v1/devices:import", headers=headers, content=csv_text).json()
    assert report["created"] == 2 and report["refused"] == 6
    by_row = {r["row"]: r for r in report["rows"]}
    assert by_row[2]["result"] == "created" and by_row[9]["result"] == "created"
    assert (by_row[3]["field"], by_row[4]["field"], by_row[5]["field"], by_row[6]["field"]) == (
        "dev_eui", None, "latitude", "model")
    assert "son-tra" in by_row[4]["reason"] and "exists already" in by_row[7]["reason"]
    assert by_row[8]["field"] == "app_key" and "abc" not in by_row[8]["reason"]
    tagged = api_client.get("/api/v1/devices/0000000000000001", headers=admin).json()
    assert tagged["tags"] == {"route": "r1", "side": "east"} and tagged["zone"]["code"] == "hai-chau"
    missing = api_client.post("/api/v1/devices:import", headers=headers, content="dev_eui,name\n1,2\n")
    assert "lacks kind" in _error(missing, 422)["message"]
    assert _error(api_client.post("/api/v1/devices:import", headers=headers, content=b"\xff\xfe\x00"), 422)
    extra = "dev_eui,name,kind,model,latitude,longitude,colour\n"
    assert "unknown CSV columns: colour" in _error(
        api_client.post("/api/v1/devices:import", headers=headers, content=extra), 422)["message"]


def test_claiming_a_device_the_ingest_enrolled(api_client: TestClient, admin: dict[str, str], db_url: str) -> None:
    ingest(db_url, [("70b3d57ed0054a1f", 1, lpp(24, 55), datetime.now(UTC) - timedelta(minutes=2))])
    tech = key(db_url, "tech-hc", "technician", ["hai-chau"])
    unregistered = api_client.get("/api/v1/devices", headers=tech, params={"status": "unregistered"}).json()
    assert [d["dev_eui"] for d in unregistered["items"]] == ["70b3d57ed0054a1f"]
    assert unregistered["items"][0]["commissioning"]["stage"] == "unregistered"
    body = {k: v for k, v in device("70b3d57ed0054a1f").items() if k != "dev_eui"}
    claimed = api_client.post("/api/v1/devices/70b3d57ed0054a1f/claim", headers=tech, json=body)
    assert claimed.status_code == 200, claimed.text
    result = claimed.json()
    assert result["status"] == "registered" and result["zone"]["code"] == "hai-chau"
    assert result["commissioning"]["claimed_at"] and result["commissioning"]["first_uplink_at"]
    assert result["commissioning"]["stage"] == "commissioned"  # its uplink already decoded
    assert _error(api_client.post("/api/v1/devices/70b3d57ed0054a1f/claim", headers=tech, json=body), 409)
    assert _error(api_client.post("/api/v1/devices/0000000000000abc/claim", headers=tech, json=body), 404)


def test_commissioning_follows_the_uplinks(api_client: TestClient, admin: dict[str, str], db_url: str) -> None:
    api_client.post("/api/v1/devices", headers=admin, json=device("00000000000000a1"))
    first = datetime.now(UTC) - timedelta(minutes=30)
    ingest(db_url, [("00000000000000a1", 1, b"\x01", first)])  # does not decode
    mid = api_client.get("/api/v1/devices/00000000000000a1", headers=admin).json()["commissioning"]
    assert mid["stage"] == "first_uplink" and mid["decoding_verified_at"] is None
    assert datetime.fromisoformat(mid["first_uplink_at"]) == first  # the uplink's own time
    ok = first + timedelta(minutes=10)
    ingest(db_url, [("00000000000000a1", 2, lpp(26, 70), ok)])
    done = api_client.get("/api/v1/devices/00000000000000a1", headers=admin).json()["commissioning"]
    assert done["stage"] == "commissioned" and done["decoding_verified_at"] is not None
    assert done["first_uplink_at"] == mid["first_uplink_at"]  # set once
    assert done["commissioned_at"] >= done["registered_at"]
    from ioc_api.queries.devices import refresh_commissioning

    with psycopg.connect(db_url, autocommit=True) as conn:  # the background pass stores what reads derived
        assert refresh_commissioning(conn) == 2
        stored = conn.execute("""SELECT first_uplink_at, decoding_verified_at, commissioned_at FROM devices
                                 WHERE dev_eui = '00000000000000a1'""").fetchone()
        assert refresh_commissioning(conn) == 0
    assert stored is not None and [s.isoformat().replace("+00:00", "Z") for s in stored] == [
        done["first_uplink_at"], done["decoding_verified_at"], done["commissioned_at"]]


def test_decommission_keeps_data_and_is_audited(api_client: TestClient, admin: dict[str, str], db_url: str) -> None:
    api_client.post("/api/v1/devices", headers=admin, json=device("00000000000000a1"))
    ingest(db_url, [("00000000000000a1", 1, lpp(26, 70), datetime.now(UTC))])
    gone = api_client.delete("/api/v1/devices/00000000000000a1", headers=admin, params={"reason": "stolen"})
    assert gone.status_code == 200 and gone.json()["commissioning"]["stage"] == "decommissioned"
    assert _error(api_client.delete("/api/v1/devices/00000000000000a1", headers=admin), 409)
    assert _error(api_client.patch("/api/v1/devices/00000000000000a1", headers=admin, json={"name": "x"}), 409)
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM measurements").fetchone() == (2,)
    audit = api_client.get("/api/v1/audit", headers=admin, params={"entity": "device"}).json()["items"]
    assert [a["action"] for a in audit] == ["decommission", "create"]
    assert audit[0]["actor"] == "root" and audit[0]["changes"]["reason"] == "stolen"


def test_audit_is_for_admins_and_pages_backwards(api_client: TestClient, admin: dict[str, str], db_url: str) -> None:
    for i in range(5):
        api_client.post("/api/v1/devices", headers=admin, json=device(f"00000000000000a{i}"))
    first = api_client.get("/api/v1/audit", headers=admin, params={"limit": 3}).json()
    assert len(first["items"]) == 3 and first["next_before_id"] == first["items"][-1]["id"]
    rest = api_client.get("/api/v1/audit", headers=admin, params={"limit": 3, "before_id": first["next_before_id"]})
    ids = [a["id"] for a in first["items"] + rest.json()["items"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 6  # 5 devices and the admin user
    for role in ("operator", "technician", "developer"):
        assert _error(api_client.get("/api/v1/audit", headers=key(db_url, f"u-{role}", role, ["hai-chau"])), 403)


def test_a_district_covers_its_wards_and_zone_versions_are_listed(api_client: TestClient, admin: dict[str, str],
                                                                  db_url: str) -> None:
    from ioc_api.queries.zones import import_zones
    from ioc_core.zones import Zone

    ring = ((108.21, 16.045), (108.22, 16.045), (108.22, 16.055), (108.21, 16.055), (108.21, 16.045))
    ward = Zone("thach-thang", "Thạch Thang", "ward", (ring,), parent="hai-chau")
    with psycopg.connect(db_url, autocommit=True) as conn:
        import_zones(conn, [ward], actor="test", approximate=True)
    tech = key(db_url, "tech-hc", "technician", ["hai-chau"])
    created = api_client.post("/api/v1/devices", headers=tech, json=device("00000000000000a1", (16.05, 108.215)))
    assert created.status_code == 201, created.text
    assert created.json()["zone"] == {"code": "thach-thang", "name": "Thạch Thang"}
    assert api_client.get("/api/v1/devices", headers=tech, params={"zone": "hai-chau"}).json()["total"] == 1
    zones = {z["code"]: z for z in api_client.get("/api/v1/zones", headers=admin).json()}
    assert zones["thach-thang"]["parent_code"] == "hai-chau"
    assert zones["thach-thang"]["devices"]["total"] == zones["hai-chau"]["devices"]["total"] == 1
    moved = (ring[0], (108.225, 16.045), *ring[2:])
    with psycopg.connect(db_url, autocommit=True) as conn:
        import_zones(conn, [Zone("thach-thang", "Thạch Thang", "ward", (moved,), parent="hai-chau")],
                     actor="test", approximate=True)
    versions = api_client.get("/api/v1/zones/thach-thang/versions", headers=admin).json()
    assert [(v["version"], v["valid_to"] is None, v["devices"]) for v in versions] == [(1, False, 0), (2, True, 1)]
    assert api_client.get("/api/v1/zones/nowhere/versions", headers=admin).status_code == 404


def test_unparseable_bodies_and_unregistered_updates_answer_in_the_error_shape(api_client: TestClient,
                                                                               admin: dict[str, str],
                                                                               db_url: str) -> None:
    broken = api_client.post("/api/v1/devices", headers={**admin, "Content-Type": "application/json"}, content=b"{\xff")
    assert broken.status_code in (400, 422) and broken.json()["error"]["code"] in ("bad_request", "invalid")
    assert _error(api_client.put("/api/v1/devices/0000000000000001", headers=admin, json={}), 405)["code"] == (
        "method_not_allowed")
    nul = api_client.get("/api/v1/devices", headers=admin, params={"q": "a\x00b"})
    assert _error(nul, 422)["code"] == "invalid"
    ingest(db_url, [("70b3d57ed0054a1f", 1, lpp(24, 55), datetime.now(UTC))])
    patched = api_client.patch("/api/v1/devices/70b3d57ed0054a1f", headers=admin, json={"name": "x"})
    assert "claim it" in _error(patched, 409)["message"]
    operation = api_client.get("/openapi.json").json()["paths"]["/api/v1/devices"]["post"]
    assert {"401", "403", "409", "422"} <= set(operation["responses"])
    assert operation["responses"]["403"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorBody")
