"""ChirpStack v4.1+ wire rendering: byte equality with the reference samples and round trips."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from chirpstack_api import common, gw, integration
from google.protobuf import json_format

from gateways.chirpstack import (
    EVENT_MESSAGES,
    EVENT_TYPES,
    format_duration,
    format_f32,
    format_f64,
    format_timestamp,
    json_string,
    render,
    render_json,
    topic_for,
)
from tests.reference import CHIRPSTACK_SAMPLES

SAMPLES = CHIRPSTACK_SAMPLES


def _samples() -> list[dict[str, Any]]:
    if not SAMPLES.exists():
        pytest.skip(f"reference samples not found at {SAMPLES}")
    events: list[dict[str, Any]] = json.loads(SAMPLES.read_text(encoding="utf-8"))["events"]
    return events


def _parse(sample: dict[str, Any]) -> Any:
    return json_format.Parse(json.dumps(sample["payload"]), integration.UplinkEvent(), ignore_unknown_fields=True)


def _split_object(wire: str) -> tuple[str, list[str]]:
    """The wire text without the ``object`` value, and that value's top-level members as text."""
    start = wire.index('"object":{') + len('"object":')
    depth = 0
    for end in range(start, len(wire)):
        depth += {"{": 1, "}": -1}.get(wire[end], 0)
        if depth == 0:
            break
    inner = wire[start + 1 : end]
    return wire[:start] + wire[end + 1 :], sorted(re.findall(r'"[^"]+":(?:"[^"]*"|[^,{}]+)', inner))


def test_samples_without_object_are_byte_equal() -> None:
    checked = 0
    for sample in _samples():
        if "object" in sample["payload"]:
            continue
        assert render_json(_parse(sample)) == sample["wire"].encode(), sample["id"]
        checked += 1
    assert checked == 2


def test_sample_with_object_is_equal_but_for_the_struct_key_order() -> None:
    # upb keeps Struct keys in a hash order and we sort them; the sample lists them in insertion order.
    # Rust's HashMap has no order either, so: everything else byte-equal, the object's members
    # (key and number text, e.g. 61.0) equal as a set.
    (sample,) = [s for s in _samples() if "object" in s["payload"]]
    rendered = render_json(_parse(sample)).decode()
    assert _split_object(rendered) == _split_object(sample["wire"])
    assert json.loads(rendered) == json.loads(sample["wire"])


def test_sample_topics() -> None:
    for sample in _samples():
        info = sample["payload"]["deviceInfo"]
        assert topic_for(info["applicationId"], info["devEui"], "up") == sample["topic"]


def test_topic_for_checks_its_arguments() -> None:
    assert topic_for("a", "70B3D57ED0054A1F", "status") == "application/a/device/70b3d57ed0054a1f/event/status"
    with pytest.raises(ValueError, match="unknown ChirpStack event type"):
        topic_for("a", "70b3d57ed0054a1f", "integration")
    with pytest.raises(ValueError, match="16 hex"):
        topic_for("a", "70b3d5", "up")


def _device_info() -> Any:
    return integration.DeviceInfo(
        tenant_id="52f14cd4-c6f1-4fbd-8f87-4025e1d49242",
        tenant_name="Da Nang IOC",
        application_id="8b1e7f2a-3c4d-4e5f-9a6b-7c8d9e0f1a2b",
        application_name="dn-flood-warning",
        device_profile_id="c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f",
        device_profile_name="WL100",
        device_name="wl-hai-chau-001",
        dev_eui="70b3d57ed0054a1f",
        device_class_enabled=common.CLASS_C,
        tags={"zone": "hai-chau", "site": "Cầu Rồng \"Dragon\"", "kind": "water_level"},
    )


def _events() -> dict[str, Any]:
    info = _device_info()
    up = integration.UplinkEvent(
        deduplication_id="5f0b1c3e-8a4d-4f2b-9c61-2d7e3a9b0c44",
        device_info=info,
        dev_addr="01fa3b7c",
        adr=True,
        dr=3,
        f_cnt=4_000_000_000,
        f_port=10,
        data=b"\x10\x02\xe6\x14\x8a\x0e\x0e",
        rx_info=[
            gw.UplinkRxInfo(gateway_id="ac1f09fffe0b1a01", uplink_id=1, rssi=-120, snr=-12.25, channel=0,
                            location=common.Location(latitude=16.0771, longitude=108.2211, altitude=166.0),
                            context=b"\x00\x01\x02\x03", crc_status=gw.CRC_OK, metadata={"b": "2", "a": "1"}),
            gw.UplinkRxInfo(gateway_id="ac1f09fffe0b1a02", rssi=-90, snr=0.1, rf_chain=1),
        ],
        tx_info=gw.UplinkTxInfo(
            frequency=921_400_000,
            modulation=gw.Modulation(lora=gw.LoraModulationInfo(bandwidth=125000, spreading_factor=9,
                                                                code_rate=gw.CR_4_5)),
        ),
        relay_rx_info=integration.UplinkRelayRxInfo(dev_eui="0102030405060708", frequency=0),
        region_config_id="as923_2",
    )
    up.time.FromJsonString("2026-03-14T09:26:53.5Z")
    up.rx_info[0].gw_time.FromJsonString("2026-03-14T09:26:53.500001Z")
    up.rx_info[0].time_since_gps_epoch.FromJsonString("1457515631.5s")
    up.object.update({"water_level": 0.742, "count": 3, "ok": True, "nested": {"z": 1, "a": [1.5, "x", None]}})
    join = integration.JoinEvent(deduplication_id="3ac7e3c4-4401-4b8d-9386-a5c902f9202d", device_info=info,
                                 dev_addr="00189440", region_config_id="as923_2")
    join.time.FromJsonString("2022-07-18T09:34:15Z")
    status = integration.StatusEvent(deduplication_id="3ac7e3c4-4401-4b8d-9386-a5c902f9202d", device_info=info,
                                     margin=7, battery_level=87.4015748)
    status.time.FromJsonString("2022-07-18T09:34:15.123Z")
    ack = integration.AckEvent(deduplication_id="3ac7e3c4-4401-4b8d-9386-a5c902f9202d", device_info=info,
                               queue_item_id="e3b9a7d2-1f64-4c0e-b5a8-93c2f61d7e05", acknowledged=True, f_cnt_down=4)
    txack = integration.TxAckEvent(downlink_id=4_000_000_000, device_info=info,
                                   queue_item_id="e3b9a7d2-1f64-4c0e-b5a8-93c2f61d7e05", f_cnt_down=4,
                                   gateway_id="ac1f09fffe0b1a01")
    txack.tx_info.frequency = 921_400_000
    txack.tx_info.power = 16
    txack.tx_info.modulation.lora.spreading_factor = 7
    txack.tx_info.timing.delay.delay.FromJsonString("1s")
    txack.tx_info.context = b"\x01\x02\x03\x04"
    log = integration.LogEvent(
        device_info=info,
        level=integration.WARNING,
        code=integration.UPLINK_F_CNT_RETRANSMISSION,
        description="Uplink was flagged as re-transmission / frame-counter did not increment",
        context={"deduplication_id": "3ac7e3c4-4401-4b8d-9386-a5c902f9202d"},
    )
    log.time.FromJsonString("2022-07-18T09:34:15.000000001Z")
    location = integration.LocationEvent(deduplication_id="3ac7e3c4-4401-4b8d-9386-a5c902f9202d", device_info=info,
                                         location=common.Location(latitude=16.05, longitude=108.2,
                                                                  source=common.GEO_RESOLVER_TDOA, accuracy=25.5))
    location.time.FromJsonString("2022-07-18T09:34:15Z")
    return {"up": up, "join": join, "status": status, "ack": ack, "txack": txack, "log": log, "location": location}


def test_every_event_type_has_a_message() -> None:
    assert set(EVENT_TYPES) == set(EVENT_MESSAGES) == set(_events())


@pytest.mark.parametrize("event", EVENT_TYPES)
def test_json_round_trip(event: str) -> None:
    message = _events()[event]
    wire = render(message, json=True)
    # Compact: re-serialising without whitespace (same key order) gives the same text.
    assert json.dumps(json.loads(wire), separators=(",", ":"), ensure_ascii=False).encode() == wire
    parsed = json_format.Parse(wire, EVENT_MESSAGES[event](), ignore_unknown_fields=True)
    assert parsed == message
    assert render_json(parsed) == wire


@pytest.mark.parametrize("event", EVENT_TYPES)
def test_protobuf_round_trip(event: str) -> None:
    message = _events()[event]
    wire = render(message, json=False)
    assert EVENT_MESSAGES[event].FromString(wire) == message


def test_integration_package_emits_defaults_gw_and_common_do_not() -> None:
    wire = json.loads(render_json(_events()["up"]))
    # integration.UplinkEvent: defaults present
    assert wire["confirmed"] is False
    assert wire["deviceInfo"]["deviceClassEnabled"] == "CLASS_C"
    assert wire["relayRxInfo"] == {"devEui": "0102030405060708", "frequency": 0, "dr": 0, "snr": 0.0, "rssi": 0,
                                   "worChannel": 0}
    assert "joinServerContext" not in wire  # unset sub-messages are omitted, never null
    # gw.UplinkRxInfo: defaults absent
    second = wire["rxInfo"][1]
    assert "channel" not in second and "uplinkId" not in second and "location" not in second
    assert "crcStatus" not in second and second["rfChain"] == 1
    assert "channel" not in wire["rxInfo"][0]  # channel 0 is a default too


def test_field_order_is_declaration_order() -> None:
    text = render_json(_events()["up"]).decode()
    rx = text[text.index('"rxInfo":[') :]
    # ns_time (field 17) is declared after gw_time (3), time_since_gps_epoch follows.
    assert rx.index('"gwTime"') < rx.index('"timeSinceGpsEpoch"') < rx.index('"rssi"')
    info = text[text.index('"deviceInfo"') :]
    assert info.index('"deviceClassEnabled"') < info.index('"tags"')  # field 10 before field 9
    status = render_json(_events()["status"]).decode()
    assert re.search(r'"margin":7,"externalPowerSource":false,"batteryLevelUnavailable":false,'
                     r'"batteryLevel":87\.40157}$', status)


def test_scalar_rendering() -> None:
    up = render_json(_events()["up"]).decode()
    assert '"time":"2026-03-14T09:26:53.500+00:00"' in up
    assert '"gwTime":"2026-03-14T09:26:53.500001+00:00"' in up
    assert '"timeSinceGpsEpoch":"1457515631.500s"' in up
    assert '"fCnt":4000000000' in up
    assert '"data":"EALmFIoODg=="' in up and '"context":"AAECAw=="' in up
    assert '"snr":-12.25' in up and '"snr":0.1' in up
    assert '"metadata":{"a":"1","b":"2"}' in up
    assert '"site":"Cầu Rồng \\"Dragon\\""' in up  # UTF-8 kept, quotes escaped
    assert ('"object":{"count":3.0,"nested":{"a":[1.5,"x",null],"z":1.0},"ok":true,"water_level":0.742}'
            in up)
    txack = render_json(_events()["txack"]).decode()
    assert '"downlinkId":4000000000' in txack
    assert '"timing":{"delay":{"delay":"1s"}}' in txack
    log = render_json(_events()["log"]).decode()
    assert log.startswith('{"time":"2022-07-18T09:34:15.000000001+00:00","deviceInfo":')
    assert '"level":"WARNING","code":"UPLINK_F_CNT_RETRANSMISSION"' in log
    location = render_json(_events()["location"]).decode()
    assert '"location":{"latitude":16.05,"longitude":108.2,"source":"GEO_RESOLVER_TDOA","accuracy":25.5}' in location


def test_oneof_members_come_after_plain_fields() -> None:
    txack = render_json(_events()["txack"]).decode()
    tx = txack[txack.index('"txInfo"') :]
    assert tx.index('"modulation"') < tx.index('"timing"') < tx.index('"context"')
    assert '"modulation":{"lora":{"spreadingFactor":7}}' in tx


def test_fragments_replace_a_field() -> None:
    event = _events()["join"]
    info_json = render_json(event.device_info).decode()
    event.ClearField("device_info")
    assert render_json(event, fragments={"device_info": info_json}) == render_json(_events()["join"])


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.0, "0.0"), (-0.0, "-0.0"), (61.0, "61.0"), (3.1, "3.1"), (0.1, "0.1"), (1e-5, "0.00001"),
     (1.5e-7, "1.5e-7"), (1e16, "1e16"), (1e15, "1000000000000000.0"), (-2.5e20, "-2.5e20"),
     (float("nan"), "null"), (float("inf"), "null")],
)
def test_format_f64_is_serde_json(value: float, text: str) -> None:
    assert format_f64(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(7.25, "7.25"), (-13.75, "-13.75"), (0.1, "0.1"), (123456789.0, "123456790.0"), (1e13, "1e13"),
     (1e12, "1000000000000.0"), (1e-6, "0.000001"), (1e-7, "1e-7"), (3.4e38, "3.4e38"), (-0.0, "-0.0"),
     (87.4015748, "87.40157")],
)
def test_format_f32_is_serde_json(value: float, text: str) -> None:
    assert format_f32(value) == text


def test_time_formats() -> None:
    assert format_timestamp(1658136855, 775023242) == "2022-07-18T09:34:15.775023242+00:00"
    assert format_timestamp(0) == "1970-01-01T00:00:00+00:00"
    assert format_timestamp(5, 500_000_000) == "1970-01-01T00:00:05.500+00:00"
    assert format_timestamp(5, 1_000) == "1970-01-01T00:00:05.000001+00:00"
    assert format_duration(1457515631, 589793238) == "1457515631.589793238s"
    assert format_duration(1) == "1s"
    assert format_duration(0, -5_000_000) == "-0.005s"


def test_json_string_escapes_like_serde() -> None:
    assert json_string("Hòa Vang") == '"Hòa Vang"'
    assert json_string('a"b\\c\n\x01') == '"a\\"b\\\\c\\n\\u0001"'
