"""The ChirpStack gRPC adapter against the stand-in ChirpStack over real gRPC on loopback.

One module of ~450 lines: one test per adapter call, all against the one stand-in.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from chirpstack_api import api

from gateways.chirpstack.api import (
    ChirpStackClient,
    ChirpStackError,
    ChirpStackRefused,
    ChirpStackUnavailable,
    DeviceSpec,
)
from ioc_core.errors import RetriableError
from tests.standins.chirpstack import ChirpStackStandIn
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

APP_KEY = "2B7E151628AED2A6ABF7158809CF4F3C"
NWK_KEY = "00112233445566778899AABBCCDDEEFF"
OTHER_KEY = "F0E1D2C3B4A5968778695A4B3C2D1E0F"
DEV_EUI = "a84041000181c061"


@pytest.fixture
def app_id(chirpstack: ChirpStackStandIn) -> str:
    return chirpstack.add_application("sensors")


@pytest.fixture
def profile_id(chirpstack: ChirpStackStandIn) -> str:
    return chirpstack.add_device_profile("lht65", mac_version="1.0.3")


def spec(app_id: str, profile_id: str, **changes: object) -> DeviceSpec:
    fields: dict[str, object] = {
        "dev_eui": DEV_EUI, "name": "lht65-01", "application_id": app_id, "device_profile_id": profile_id,
        "description": "Hai Chau, school roof", "tags": {"site": "hai-chau", "kind": "climate"},
    }
    fields.update(changes)
    return DeviceSpec(**fields)  # type: ignore[arg-type]


def raw_devices(standin: ChirpStackStandIn) -> tuple[grpc.Channel, api.DeviceServiceStub, list[tuple[str, str]]]:
    channel = grpc.insecure_channel(standin.target)
    return channel, api.DeviceServiceStub(channel), [("authorization", f"Bearer {standin.token}")]


# -- devices -----------------------------------------------------------------------------------------------------


def test_ensure_device_creates_then_leaves_alone_then_updates(
    chirpstack: ChirpStackStandIn, chirpstack_client: ChirpStackClient, app_id: str, profile_id: str
) -> None:
    assert chirpstack_client.ensure_device(spec(app_id, profile_id, dev_eui=DEV_EUI.upper())) == "created"
    stored = chirpstack.devices()[DEV_EUI]
    assert (stored.name, stored.description, stored.application_id, stored.device_profile_id) == (
        "lht65-01", "Hai Chau, school roof", app_id, profile_id)
    assert dict(stored.tags) == {"site": "hai-chau", "kind": "climate"}
    assert stored.is_disabled is False

    assert chirpstack_client.ensure_device(spec(app_id, profile_id)) == "unchanged"
    assert (chirpstack.calls["Create"], chirpstack.calls["Update"]) == (1, 0)

    assert chirpstack_client.ensure_device(
        spec(app_id, profile_id, tags={"site": "son-tra"}, disabled=True)) == "updated"
    stored = chirpstack.devices()[DEV_EUI]
    assert dict(stored.tags) == {"site": "son-tra"}
    assert stored.is_disabled is True
    assert chirpstack_client.ensure_device(
        spec(app_id, profile_id, tags={"site": "son-tra"}, disabled=True)) == "unchanged"
    assert chirpstack.calls["Update"] == 1


def test_update_keeps_the_fields_we_do_not_manage(
    chirpstack: ChirpStackStandIn, chirpstack_client: ChirpStackClient, app_id: str, profile_id: str
) -> None:
    chirpstack_client.ensure_device(spec(app_id, profile_id))
    channel, stub, md = raw_devices(chirpstack)
    with channel:
        device = chirpstack.devices()[DEV_EUI]
        device.variables["api_token"] = "kept"
        device.skip_fcnt_check = True
        device.join_eui = "70b3d57ed0000001"  # as ChirpStack sets it after an OTAA join
        stub.Update(api.UpdateDeviceRequest(device=device), metadata=md, timeout=5)

    # join_eui=None means "ChirpStack's value", so the join above is not a difference...
    assert chirpstack_client.ensure_device(spec(app_id, profile_id)) == "unchanged"
    # ...and an update for another field keeps variables, skip_fcnt_check and the JoinEUI.
    assert chirpstack_client.ensure_device(spec(app_id, profile_id, name="lht65-01 (moved)")) == "updated"
    stored = chirpstack.devices()[DEV_EUI]
    assert stored.name == "lht65-01 (moved)"
    assert dict(stored.variables) == {"api_token": "kept"}
    assert stored.skip_fcnt_check is True
    assert stored.join_eui == "70b3d57ed0000001"

    assert chirpstack_client.ensure_device(
        spec(app_id, profile_id, name="lht65-01 (moved)", join_eui="70B3D57ED0000002")) == "updated"
    assert chirpstack.devices()[DEV_EUI].join_eui == "70b3d57ed0000002"


def test_a_device_moves_to_another_application_of_the_tenant(
    chirpstack: ChirpStackStandIn, chirpstack_client: ChirpStackClient, app_id: str, profile_id: str
) -> None:
    other_app = chirpstack.add_application("pilot")
    chirpstack_client.ensure_device(spec(app_id, profile_id))
    assert chirpstack_client.ensure_device(spec(other_app, profile_id)) == "updated"
    assert chirpstack.devices()[DEV_EUI].application_id == other_app


@pytest.mark.parametrize("concurrent_name", ["lht65-01", "created by someone else"])
def test_a_create_that_loses_a_race_reconciles_instead_of_failing(
    chirpstack: ChirpStackStandIn, chirpstack_client: ChirpStackClient, app_id: str, profile_id: str,
    concurrent_name: str,
) -> None:
    def someone_else_creates_it() -> None:
        with ChirpStackClient(chirpstack.target, chirpstack.token) as other:
            assert other.ensure_device(spec(app_id, profile_id, name=concurrent_name)) == "created"

    chirpstack.before_next("DeviceService.Create", someone_else_creates_it)
    outcome = chirpstack_client.ensure_device(spec(app_id, profile_id))

    assert outcome == ("unchanged" if concurrent_name == "lht65-01" else "updated")
    assert chirpstack.calls["Create"] == 2  # ours answered INTERNAL (duplicate key), as ChirpStack does
    assert chirpstack.devices()[DEV_EUI].name == "lht65-01"


def test_concurrent_ensure_device_of_one_device_creates_it_once(
    chirpstack: ChirpStackStandIn, chirpstack_client: ChirpStackClient, app_id: str, profile_id: str
) -> None:
    chirpstack.set_latency(0.05)  # every call overlaps with the others
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def provision() -> None:
        try:
            outcomes.append(chirpstack_client.ensure_device(spec(app_id, profile_id)))
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=provision) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert Counter(outcomes) == {"created": 1, "unchanged": 5}
    assert list(chirpstack.devices()) == [DEV_EUI]
    assert chirpstack.max_concurrent > 1


def test_unknown_or_malformed_references_are_refused(
    chirpstack: ChirpStackStandIn, chirpstack_client: ChirpStackClient, app_id: str, profile_id: str
) -> None:
    with pytest.raises(ChirpStackRefused) as unknown_profile:
        chirpstack_client.ensure_device(spec(app_id, str(uuid.uuid4())))
    # ChirpStack reports a dangling profile as the database's foreign-key error, not NOT_FOUND.
    assert unknown_profile.value.code == "INTERNAL"
    assert "device_device_profile_id_fkey" in str(unknown_profile.value)

    with pytest.raises(ChirpStackRefused) as unknown_app:
        chirpstack_client.ensure_device(spec(str(uuid.uuid4()), profile_id))
    assert (unknown_app.value.code, "Record not found" in str(unknown_app.value)) == ("INTERNAL", True)

    with pytest.raises(ChirpStackRefused) as bad_uuid:
        chirpstack_client.ensure_device(spec("not-a-uuid", profile_id))
    assert bad_uuid.value.code == "INVALID_ARGUMENT"

    with pytest.raises(ChirpStackRefused) as bad_eui:
        chirpstack_client.ensure_device(spec(app_id, profile_id, dev_eui="a84041"))
    assert (bad_eui.value.code, "Invalid string length" in str(bad_eui.value)) == ("INTERNAL", True)
    assert chirpstack.devices() == {}


def test_delete_device_says_whether_there_was_one(
    chirpstack: ChirpStackStandIn, chirpstack_client: ChirpStackClient, app_id: str, profile_id: str
) -> None:
    chirpstack_client.ensure_device(spec(app_id, profile_id))
    chirpstack_client.ensure_keys(DEV_EUI, APP_KEY, mac_version="1.0.3")
    assert chirpstack_client.delete_device(DEV_EUI) is True
    assert chirpstack.devices() == {}
    assert chirpstack.keys(DEV_EUI) is None  # deleted with the device
    assert chirpstack_client.delete_device(DEV_EUI) is False


# -- keys --------------------------------------------------------------------------------------------------------


def test_lorawan_1_0_keys_go_in_nwk_key(
    chirpstack: ChirpStackStandIn, chirpstack_client: ChirpStackClient, app_id: str, profile_id: str
) -> None:
    chirpstack_client.ensure_device(spec(app_id, profile_id))
    assert chirpstack_client.ensure_keys(DEV_EUI, APP_KEY, mac_version="1.0.3") == "created"
    keys = chirpstack.keys(DEV_EUI)
    assert keys is not None
    assert (keys.nwk_key, keys.app_key) == (APP_KEY.lower(), "0" * 32)

    assert chirpstack_client.ensure_keys(DEV_EUI, APP_KEY.lower(), mac_version="1.0.3") == "unchanged"
    # 1.0: no NwkKey
    assert chirpstack_client.ensure_keys(DEV_EUI, APP_KEY, NWK_KEY, mac_version="1.0.2") == "unchanged"
    assert chirpstack.calls["UpdateKeys"] == 0

    assert chirpstack_client.ensure_keys(DEV_EUI, OTHER_KEY, mac_version="1.0.3") == "updated"
    keys = chirpstack.keys(DEV_EUI)
    assert keys is not None
    assert keys.nwk_key == OTHER_KEY.lower()


def test_lorawan_1_1_keys_fill_both(
    chirpstack: ChirpStackStandIn, chirpstack_client: ChirpStackClient, app_id: str, profile_id: str
) -> None:
    chirpstack_client.ensure_device(spec(app_id, profile_id))
    chirpstack_client.ensure_keys(DEV_EUI, APP_KEY, mac_version="1.0.3")
    assert chirpstack_client.ensure_keys(DEV_EUI, APP_KEY, NWK_KEY, mac_version="1.1.0") == "updated"
    keys = chirpstack.keys(DEV_EUI)
    assert keys is not None
    assert (keys.nwk_key, keys.app_key) == (NWK_KEY.lower(), APP_KEY.lower())
    assert chirpstack_client.ensure_keys(DEV_EUI, APP_KEY, NWK_KEY, mac_version="1.1.0") == "unchanged"

    calls_before = sum(chirpstack.calls.values())
    with pytest.raises(ChirpStackRefused) as missing:
        chirpstack_client.ensure_keys(DEV_EUI, APP_KEY, mac_version="1.1.0")
    assert missing.value.code == "INVALID_ARGUMENT"
    assert sum(chirpstack.calls.values()) == calls_before  # refused before anything was sent


def test_key_updates_keep_gen_app_key(chirpstack: ChirpStackStandIn, chirpstack_client: ChirpStackClient, app_id: str,
                                      profile_id: str) -> None:
    chirpstack_client.ensure_device(spec(app_id, profile_id))
    channel, stub, md = raw_devices(chirpstack)
    with channel:
        keys = api.DeviceKeys(dev_eui=DEV_EUI, nwk_key=APP_KEY, gen_app_key=NWK_KEY)
        stub.CreateKeys(api.CreateDeviceKeysRequest(device_keys=keys), metadata=md, timeout=5)
    assert chirpstack_client.ensure_keys(DEV_EUI, OTHER_KEY, mac_version="1.0.4") == "updated"
    stored = chirpstack.keys(DEV_EUI)
    assert stored is not None
    assert (stored.nwk_key, stored.gen_app_key) == (OTHER_KEY.lower(), NWK_KEY.lower())


def test_keys_for_a_device_chirpstack_does_not_know_are_refused(chirpstack_client: ChirpStackClient) -> None:
    with pytest.raises(ChirpStackRefused) as refused:
        chirpstack_client.ensure_keys(DEV_EUI, APP_KEY, mac_version="1.0.3")
    assert refused.value.code == "INTERNAL"
    assert "device_keys_dev_eui_fkey" in str(refused.value)


def test_no_key_text_in_any_error_or_log(
    chirpstack: ChirpStackStandIn, chirpstack_client: ChirpStackClient, app_id: str, profile_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    chirpstack_client.ensure_device(spec(app_id, profile_id))
    chirpstack_client.ensure_keys(DEV_EUI, APP_KEY, mac_version="1.0.3")
    errors: list[ChirpStackError] = []

    def collect(call: object, *args: object, **kwargs: object) -> None:
        with pytest.raises(ChirpStackError) as caught:
            call(*args, **kwargs)  # type: ignore[operator]
        errors.append(caught.value)

    collect(chirpstack_client.ensure_keys, DEV_EUI, APP_KEY[:-1] + "G", mac_version="1.0.3")
    collect(chirpstack_client.ensure_keys, DEV_EUI, APP_KEY, NWK_KEY[:20], mac_version="1.1.0")
    collect(chirpstack_client.ensure_keys, DEV_EUI, APP_KEY, mac_version="2.0")
    collect(chirpstack_client.ensure_keys, "ffffffffffffffff", NWK_KEY, mac_version="1.0.3")
    chirpstack.fail_next("UpdateKeys", grpc.StatusCode.INTERNAL, details="update failed")
    collect(chirpstack_client.ensure_keys, DEV_EUI, OTHER_KEY, mac_version="1.0.3")
    chirpstack.set_down(True)
    collect(chirpstack_client.ensure_keys, DEV_EUI, NWK_KEY, mac_version="1.0.3")

    assert len(errors) == 6
    texts = [f"{e!s} {e!r} {e.__cause__!s}" for e in errors] + [r.getMessage() for r in caplog.records]
    for key in (APP_KEY, NWK_KEY, OTHER_KEY, NWK_KEY[:20]):
        for text in texts:
            assert key.lower() not in text.lower()


# -- transport and status translation ----------------------------------------------------------------------------


def test_a_wrong_token_is_refused_as_unauthenticated(chirpstack: ChirpStackStandIn) -> None:
    with ChirpStackClient(chirpstack.target, "not-the-token") as client, pytest.raises(ChirpStackRefused) as refused:
        client.list_gateways()
    assert refused.value.code == "UNAUTHENTICATED"
    assert "InvalidSignature" in str(refused.value)


def test_the_standin_checks_the_header_like_chirpstack(chirpstack: ChirpStackStandIn) -> None:
    channel, stub, _ = raw_devices(chirpstack)
    with channel:
        with pytest.raises(grpc.RpcError) as missing:
            stub.Get(api.GetDeviceRequest(dev_eui=DEV_EUI), timeout=5)
        assert (missing.value.code(), missing.value.details()) == (
            grpc.StatusCode.UNAUTHENTICATED, "no authorization provided")
        with pytest.raises(grpc.RpcError) as no_bearer:
            stub.Get(api.GetDeviceRequest(dev_eui=DEV_EUI), metadata=[("authorization", chirpstack.token)], timeout=5)
        assert no_bearer.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "Bearer" in no_bearer.value.details()
        with pytest.raises(grpc.RpcError) as unknown:
            stub.Get(api.GetDeviceRequest(dev_eui=DEV_EUI), metadata=[("authorization", f"Bearer {chirpstack.token}")],
                     timeout=5)
        assert (unknown.value.code(), unknown.value.details()) == (
            grpc.StatusCode.NOT_FOUND, f"Object does not exist (id: {DEV_EUI})")


def test_an_outage_is_unavailable_and_keeps_the_state(
    chirpstack: ChirpStackStandIn, chirpstack_client: ChirpStackClient, app_id: str, profile_id: str
) -> None:
    chirpstack_client.ensure_device(spec(app_id, profile_id))
    chirpstack.set_down(True)
    with pytest.raises(ChirpStackUnavailable) as unavailable:
        chirpstack_client.ensure_device(spec(app_id, profile_id))
    assert unavailable.value.code == "UNAVAILABLE"
    assert isinstance(unavailable.value, RetriableError)
    chirpstack.set_down(False)
    assert chirpstack_client.ensure_device(spec(app_id, profile_id)) == "unchanged"


def test_a_stopped_server_is_unavailable_at_once_and_the_client_recovers(
    chirpstack: ChirpStackStandIn, app_id: str, profile_id: str
) -> None:
    with ChirpStackClient(chirpstack.target, chirpstack.token, timeout_s=2.0) as client:
        client.ensure_device(spec(app_id, profile_id))
        chirpstack.stop()
        started = time.monotonic()
        with pytest.raises(ChirpStackUnavailable) as refused:
            client.ensure_device(spec(app_id, profile_id))
        assert time.monotonic() - started < 2.0  # connection refused, not a wait for the deadline
        assert refused.value.code == "UNAVAILABLE"

        chirpstack.start()  # same port, state kept

        def reconnected() -> bool:  # gRPC reconnects with backoff
            try:
                assert client.ensure_device(spec(app_id, profile_id)) == "unchanged"
            except ChirpStackUnavailable:
                return False
            return True

        wait_for(reconnected, timeout_s=10, what="the client to reach the restarted server", interval_s=0.1)


def test_tls_to_a_plaintext_server_is_unavailable(chirpstack: ChirpStackStandIn) -> None:
    with (
        ChirpStackClient(chirpstack.target, chirpstack.token, tls=True, timeout_s=2.0) as client,
        pytest.raises(ChirpStackUnavailable) as failed,
    ):
        client.list_gateways()
    assert failed.value.code == "UNAVAILABLE"
    assert chirpstack.calls["List"] == 0  # the handshake failed before any call reached the server


def test_a_slow_server_hits_the_deadline(chirpstack: ChirpStackStandIn) -> None:
    chirpstack.set_latency(1.0)
    with ChirpStackClient(chirpstack.target, chirpstack.token, timeout_s=0.2) as client:
        started = time.monotonic()
        with pytest.raises(ChirpStackUnavailable) as slow:
            client.list_gateways()
    assert slow.value.code == "DEADLINE_EXCEEDED"
    assert time.monotonic() - started < 0.9


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (grpc.StatusCode.RESOURCE_EXHAUSTED, ChirpStackUnavailable),
        (grpc.StatusCode.ABORTED, ChirpStackUnavailable),
        (grpc.StatusCode.PERMISSION_DENIED, ChirpStackRefused),
        (grpc.StatusCode.FAILED_PRECONDITION, ChirpStackRefused),
        (grpc.StatusCode.INTERNAL, ChirpStackRefused),
    ],
)
def test_status_codes_sort_into_retry_or_refusal(
    chirpstack: ChirpStackStandIn, chirpstack_client: ChirpStackClient, code: grpc.StatusCode,
    error: type[ChirpStackError],
) -> None:
    chirpstack.fail_next("GatewayService.List", code, details="told so")
    with pytest.raises(error) as caught:
        chirpstack_client.list_gateways()
    assert caught.value.code == code.name
    assert "told so" in str(caught.value)
    assert isinstance(caught.value.__cause__, grpc.RpcError)
    assert chirpstack_client.list_gateways() == []  # the injected failure was used up


# -- device profiles and gateways --------------------------------------------------------------------------------


def test_device_profile_mac_version_is_read_once(chirpstack: ChirpStackStandIn,
                                                 chirpstack_client: ChirpStackClient) -> None:
    v103 = chirpstack.add_device_profile("lht65", "1.0.3")
    v110 = chirpstack.add_device_profile("class-c-valve", "1.1.0")
    assert chirpstack_client.device_profile_mac_version(v103) == "1.0.3"
    assert chirpstack_client.device_profile_mac_version(v110) == "1.1.0"
    assert chirpstack_client.device_profile_mac_version(v103.upper()) == "1.0.3"
    assert chirpstack.service_calls["DeviceProfileService.Get"] == 2

    with pytest.raises(ChirpStackRefused) as unknown:
        chirpstack_client.device_profile_mac_version(str(uuid.uuid4()))
    assert unknown.value.code == "NOT_FOUND"
    with pytest.raises(ChirpStackRefused) as malformed:
        chirpstack_client.device_profile_mac_version("lht65")
    assert malformed.value.code == "INVALID_ARGUMENT"


def test_list_gateways_reports_state_location_and_last_seen(
    chirpstack: ChirpStackStandIn, chirpstack_client: ChirpStackClient
) -> None:
    now = datetime.now(UTC)
    chirpstack.add_gateway("0016c001ff10a235", "a-online", latitude=16.0544, longitude=108.2022,
                        last_seen_at=now - timedelta(seconds=50), stats_interval_s=30)
    chirpstack.add_gateway("0016C001FF10A236", "b-offline", last_seen_at=now - timedelta(seconds=61),
                           stats_interval_s=30)
    chirpstack.add_gateway("0016c001ff10a237", "c-never")

    gateways = {g.name: g for g in chirpstack_client.list_gateways()}

    assert {name: g.state for name, g in gateways.items()} == {
        "a-online": "online", "b-offline": "offline", "c-never": "never_seen"}
    online = gateways["a-online"]
    assert (online.gateway_id, online.latitude, online.longitude, online.altitude) == (
        "0016c001ff10a235", 16.0544, 108.2022, 0.0)
    assert online.last_seen_at == now - timedelta(seconds=50)
    assert online.last_seen_at is not None and online.last_seen_at.utcoffset() == timedelta(0)
    assert online.tenant_id == chirpstack.tenant_id
    assert gateways["b-offline"].gateway_id == "0016c001ff10a236"
    assert (gateways["b-offline"].latitude, gateways["b-offline"].altitude) == (None, None)
    assert gateways["c-never"].last_seen_at is None


def test_list_gateways_reads_every_page(chirpstack: ChirpStackStandIn, chirpstack_client: ChirpStackClient) -> None:
    for i in range(250):
        chirpstack.add_gateway(f"{i:016x}", f"gw-{i:03d}")

    gateways = chirpstack_client.list_gateways()

    assert [g.gateway_id for g in gateways] == [f"{i:016x}" for i in range(250)]
    assert chirpstack.calls["List"] == 3
    assert len(chirpstack_client.list_gateways(tenant_id=chirpstack.tenant_id)) == 250
    assert chirpstack_client.list_gateways(tenant_id=str(uuid.uuid4())) == []
    times = chirpstack.call_times()
    assert len(times) == sum(chirpstack.calls.values()) == 7
    assert times == sorted(times)
