"""Provisioning into ChirpStack through the API, against the stand-in ChirpStack over real gRPC on loopback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import psycopg
import pytest
from fastapi.testclient import TestClient

from ioc_core.settings import ChirpStackSettings
from tests.api_support import HAI_CHAU, app_for, device, key
from tests.standins.chirpstack import ChirpStackStandIn
from tests.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.both_modes]

APP_KEY = "2b7e151628aed2a6abf7158809cf4f3c"
NWK_KEY = "000102030405060708090a0b0c0d0e0f"


def _settings(standin: ChirpStackStandIn, *, rate: float = 200.0, **profiles: str) -> ChirpStackSettings:
    app = standin.add_application("dn-environment")
    targets: dict[str, Any] = {"*": {"application_id": app,
                                     "device_profile_id": standin.add_device_profile("TH 1.0.3", "1.0.3")}}
    for model, mac in profiles.items():
        targets[model] = {"application_id": app, "device_profile_id": standin.add_device_profile(model, mac)}
    return ChirpStackSettings(api=standin.target, token=standin.token,  # type: ignore[arg-type]
                              profiles=targets, calls_per_s=rate, retry_s=0.2,
                              timeout_s=2.0)


def _client(db_url: str, settings: ChirpStackSettings, poll_s: float = 3600.0) -> TestClient:
    return TestClient(app_for(db_url, chirpstack=settings, poll_s=poll_s))


def _keys_left(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM device_keys").fetchone()
    assert row is not None
    return int(row[0])


def test_registering_creates_the_device_and_its_keys_in_chirpstack(chirpstack: ChirpStackStandIn,
                                                                    db_url: str) -> None:
    settings = _settings(chirpstack)
    with _client(db_url, settings) as client:
        admin = key(db_url, "root", "admin")
        response = client.post("/api/v1/devices", headers=admin,
                               json=device("a84041000181c9a1", app_key=APP_KEY, tags={"site": "cau-rong"}))
        assert response.status_code == 201, response.text
        body = response.json()
    assert body["provisioning"] == {"state": "provisioned", "error": None, "attempts": 1, "next_attempt_at": None}
    assert body["commissioning"]["stage"] == "provisioned" and body["commissioning"]["provisioned_at"]
    created = chirpstack.devices()["a84041000181c9a1"]
    assert created.name == "TH c9a1" and dict(created.tags) == {"site": "cau-rong"}
    target = settings.target_for("ioc-th100")
    assert target is not None and created.device_profile_id == str(target.device_profile_id)
    keys = chirpstack.keys("a84041000181c9a1")
    assert keys is not None and keys.nwk_key == APP_KEY and keys.app_key in ("", "0" * 32)  # LoRaWAN 1.0.x
    assert _keys_left(db_url) == 0  # ChirpStack has them; the platform keeps none


def test_lorawan_1_1_devices_get_both_root_keys(chirpstack: ChirpStackStandIn, db_url: str) -> None:
    with _client(db_url, _settings(chirpstack, **{"ioc-wl100": "1.1.0"})) as client:
        body = device("a84041000181c9a2", kind="water_level", model="ioc-wl100", app_key=APP_KEY, nwk_key=NWK_KEY)
        assert client.post("/api/v1/devices", headers=key(db_url, "root", "admin"), json=body).status_code == 201
    keys = chirpstack.keys("a84041000181c9a2")
    assert keys is not None and (keys.nwk_key, keys.app_key) == (NWK_KEY, APP_KEY)


def test_an_app_key_is_required_when_chirpstack_is_provisioned(chirpstack: ChirpStackStandIn, db_url: str) -> None:
    with _client(db_url, _settings(chirpstack)) as client:
        response = client.post("/api/v1/devices", headers=key(db_url, "root", "admin"), json=device("a84041000181c9a3"))
    assert response.status_code == 422 and response.json()["error"]["field"] == "app_key"
    assert chirpstack.devices() == {}


def test_chirpstack_down_leaves_the_device_pending_and_the_retry_finishes_it(chirpstack: ChirpStackStandIn,
                                                                             db_url: str) -> None:
    with _client(db_url, _settings(chirpstack)) as client:
        admin = key(db_url, "root", "admin")
        chirpstack.set_down(True)
        body = client.post("/api/v1/devices", headers=admin, json=device("a84041000181c9a4", app_key=APP_KEY)).json()
        assert body["status"] == "registered"  # stored, not lost
        assert body["provisioning"]["state"] == "pending" and "UNAVAILABLE" in body["provisioning"]["error"]
        assert body["provisioning"]["next_attempt_at"] is not None and _keys_left(db_url) == 1
        listed = client.get("/api/v1/devices", headers=admin, params={"provisioning": "pending"}).json()
        assert [d["dev_eui"] for d in listed["items"]] == ["a84041000181c9a4"]
        chirpstack.set_down(False)
        app = client.app
        provisioner = app.state.provisioner  # type: ignore[attr-defined]
        states: list[dict[str, Any]] = []

        def provisioned() -> bool:
            provisioner.wake()
            states.append(client.get("/api/v1/devices/a84041000181c9a4", headers=admin).json()["provisioning"])
            return bool(states[-1]["state"] == "provisioned")

        eventually(provisioned, timeout_s=10)  # the assertions below say what it came to
        state = states[-1]
    assert state["state"] == "provisioned" and state["attempts"] >= 2 and state["error"] is None
    assert "a84041000181c9a4" in chirpstack.devices() and _keys_left(db_url) == 0


def test_a_refusal_is_shown_as_failed_with_chirpstacks_reason(chirpstack: ChirpStackStandIn, db_url: str) -> None:
    settings = _settings(chirpstack)
    with _client(db_url, settings) as client:
        chirpstack.fail_next("DeviceService.Create", grpc.StatusCode.INVALID_ARGUMENT, details="Not allowed (Max "
                             "number of devices exceeded for tenant)")
        body = client.post("/api/v1/devices", headers=key(db_url, "root", "admin"),
                           json=device("a84041000181c9a5", app_key=APP_KEY)).json()
    assert body["provisioning"]["state"] == "failed"
    assert "Max number of devices exceeded" in body["provisioning"]["error"]
    assert APP_KEY not in str(body)


def test_updates_follow_and_decommissioning_removes_the_device(chirpstack: ChirpStackStandIn, db_url: str) -> None:
    with _client(db_url, _settings(chirpstack)) as client:
        admin = key(db_url, "root", "admin")
        client.post("/api/v1/devices", headers=admin, json=device("a84041000181c9a6", app_key=APP_KEY))
        renamed = client.patch("/api/v1/devices/a84041000181c9a6", headers=admin, json={"name": "TH Bạch Đằng"})
        assert renamed.json()["provisioning"]["state"] == "provisioned"
        assert chirpstack.devices()["a84041000181c9a6"].name == "TH Bạch Đằng"
        calls = sum(chirpstack.service_calls.values())
        moved = client.patch("/api/v1/devices/a84041000181c9a6", headers=admin,
                             json={"latitude": HAI_CHAU[0] + 0.001, "longitude": HAI_CHAU[1]})
        assert moved.json()["provisioning"]["state"] == "provisioned"
        assert sum(chirpstack.service_calls.values()) == calls  # a move alone changes nothing ChirpStack shows
        gone = client.delete("/api/v1/devices/a84041000181c9a6", headers=admin).json()
    assert gone["provisioning"]["state"] == "deprovisioned" and "a84041000181c9a6" not in chirpstack.devices()


def test_claiming_an_enrolled_device_updates_chirpstack_without_keys(chirpstack: ChirpStackStandIn,
                                                                     db_url: str) -> None:
    settings = _settings(chirpstack)
    target = settings.target_for("*")
    assert target is not None
    with _client(db_url, settings) as client:
        with psycopg.connect(db_url, autocommit=True) as conn:  # what the ingest enrols from an event
            conn.execute("""INSERT INTO devices (dev_eui, name, status, application_id, device_profile_id)
                            VALUES ('70b3d57ed0054a1f', 'gh-north-th-01', 'unregistered', %s, %s)""",
                         (str(target.application_id), str(target.device_profile_id)))
        from gateways.chirpstack.api import ChirpStackClient, DeviceSpec

        with ChirpStackClient(chirpstack.target, chirpstack.token) as grpc_client:
            grpc_client.ensure_device(DeviceSpec("70b3d57ed0054a1f", "gh-north-th-01", str(target.application_id),
                                                 str(target.device_profile_id)))
        body = {k: v for k, v in device("70b3d57ed0054a1f").items() if k != "dev_eui"}
        claimed = client.post("/api/v1/devices/70b3d57ed0054a1f/claim", headers=key(db_url, "root", "admin"),
                              json=body).json()
    assert claimed["provisioning"]["state"] == "provisioned" and claimed["status"] == "registered"
    assert chirpstack.devices()["70b3d57ed0054a1f"].name == "TH 4a1f"
    assert chirpstack.keys("70b3d57ed0054a1f") is None


def test_bulk_import_reaches_chirpstack_at_the_configured_pace(chirpstack: ChirpStackStandIn, db_url: str) -> None:
    rate = 40.0
    with _client(db_url, _settings(chirpstack, rate=rate), poll_s=0.2) as client:
        rows = "".join(f"{i:016x},Bin {i},waste_bin,ioc-wb100,{HAI_CHAU[0]},{HAI_CHAU[1]},{APP_KEY}\n"
                       for i in range(1, 31))
        report = client.post("/api/v1/devices:import", headers={**key(db_url, "root", "admin"),
                                                                 "Content-Type": "text/csv"},
                             content="dev_eui,name,kind,model,latitude,longitude,app_key\n" + rows).json()
        assert report["created"] == 30
        eventually(lambda: len(chirpstack.devices()) >= 30, timeout_s=30)
        assert len(chirpstack.devices()) == 30
        eventually(lambda: _keys_left(db_url) == 0, timeout_s=10)
    assert _keys_left(db_url) == 0
    times = chirpstack.call_times()
    # 4 calls per device (Get, Create, GetKeys, CreateKeys) plus a cached profile look-up.
    assert len(times) >= 120
    achieved = (len(times) - 1) / (times[-1] - times[0])
    assert achieved <= rate * 1.15, f"{achieved:.1f} calls/s exceeds the {rate} calls/s ceiling"
    assert chirpstack.max_concurrent == 1


def test_gateway_inventory_comes_from_chirpstack(chirpstack: ChirpStackStandIn, db_url: str) -> None:
    now = datetime.now(UTC)
    chirpstack.add_gateway("0016c001f153a14c", "Cầu Rồng GW", latitude=16.061, longitude=108.227,
                           last_seen_at=now - timedelta(seconds=10))
    chirpstack.add_gateway("0016c001f153a14d", "Sơn Trà GW", last_seen_at=now - timedelta(hours=2))
    chirpstack.add_gateway("0016c001f153a14e", "Spare GW")
    with _client(db_url, _settings(chirpstack)) as client:
        gateways = client.get("/api/v1/gateways", headers=key(db_url, "ops", "operator")).json()
    states = {g["gateway_eui"]: (g["name"], g["state"]) for g in gateways}
    assert states == {"0016c001f153a14c": ("Cầu Rồng GW", "online"), "0016c001f153a14d": ("Sơn Trà GW", "offline"),
                      "0016c001f153a14e": ("Spare GW", "never_seen")}
    assert all(g["chirpstack_synced_at"] for g in gateways)
