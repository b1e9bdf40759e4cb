"""Parsing ChirpStack v4 events at the edge: the recorded samples, both encodings, old and odd shapes."""

from __future__ import annotations

import json
import typing
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from chirpstack_api import common, gw, integration
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st

from gateways import chirpstack as ce
from tests.reference import CHIRPSTACK_SAMPLES

SAMPLES = CHIRPSTACK_SAMPLES


def _samples() -> list[dict[str, Any]]:
    if not SAMPLES.exists():
        pytest.fail(f"reference samples missing at {SAMPLES}")
    events: list[dict[str, Any]] = json.loads(SAMPLES.read_text())["events"]
    return events


@pytest.mark.parametrize("sample", _samples(), ids=lambda s: s["id"])
def test_sample_events_parse_in_both_encodings(sample: dict[str, Any]) -> None:
    topic = ce.parse_topic(sample["topic"])
    assert topic.event == "up"
    from_json = ce.parse_event(topic, sample["wire"].encode())
    message = json_format.Parse(sample["wire"], integration.UplinkEvent(), ignore_unknown_fields=True)
    from_proto = ce.parse_event(topic, message.SerializeToString())
    assert from_json == from_proto
    assert isinstance(from_json, ce.UplinkEvent)
    payload = sample["payload"]
    assert str(from_json.deduplication_id) == payload["deduplicationId"]
    assert from_json.f_cnt == payload["fCnt"]
    assert from_json.payload() == message.data
    assert from_json.object == payload.get("object")
    assert [rx.gateway_id for rx in from_json.rx_info] == [rx["gatewayId"] for rx in payload["rxInfo"]]
    # Nine fractional digits on the wire; microseconds kept.
    expected = datetime.fromisoformat(payload["time"][:26] + "+00:00")
    assert from_json.time == expected.astimezone(UTC)


def test_first_sample_values() -> None:
    sample = _samples()[0]
    event = ce.parse_event(ce.parse_topic(sample["topic"]), sample["wire"].encode())
    assert isinstance(event, ce.UplinkEvent)
    assert event.payload().hex() == "00e13d0c1c00"
    assert event.rx_info[0].rssi == -87 and event.rx_info[0].snr == 7.25
    assert event.tx_info is not None and event.tx_info.modulation is not None
    assert event.tx_info.modulation.lora is not None
    assert event.tx_info.modulation.lora.spreading_factor == 7
    assert event.device_info is not None and event.device_info.tags == {"site": "greenhouse-north"}


def test_v40_shape_with_defaults_omitted_and_unknown_fields() -> None:
    wire = {
        "deduplicationId": "3ac7e3c4-4401-4b8d-9386-a5c902f9202d",
        "time": "2022-07-18T09:34:15.775023242Z",
        "deviceInfo": {"devEui": "0101010101010101", "tenantId": "t"},
        "data": "qg",  # unpadded
        "someFieldFromTheFuture": {"x": 1},
    }
    topic = ce.parse_topic("application/a/device/0101010101010101/event/up")
    event = ce.parse_event(topic, json.dumps(wire).encode())
    assert isinstance(event, ce.UplinkEvent)
    assert event.f_cnt == 0 and event.rx_info == [] and event.object is None
    assert event.payload() == b"\xaa"


def _info() -> integration.DeviceInfo:
    return integration.DeviceInfo(dev_eui="0102030405060708", device_name="d", tags={"kind": "x"})


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("join", integration.JoinEvent(deduplication_id="3ac7e3c4-4401-4b8d-9386-a5c902f9202d",
                                       device_info=_info(), dev_addr="01020304")),
        ("status", integration.StatusEvent(deduplication_id="3ac7e3c4-4401-4b8d-9386-a5c902f9202d",
                                           device_info=_info(), margin=7, battery_level=81.5)),
        ("ack", integration.AckEvent(deduplication_id="3ac7e3c4-4401-4b8d-9386-a5c902f9202d",
                                     device_info=_info(), queue_item_id="q", acknowledged=True, f_cnt_down=3)),
        ("txack", integration.TxAckEvent(downlink_id=99, device_info=_info(), queue_item_id="q",
                                         f_cnt_down=3, gateway_id="0016c001f153a14c")),
        ("log", integration.LogEvent(device_info=_info(), level=integration.LogLevel.WARNING,
                                     code=integration.LogCode.UPLINK_F_CNT_RETRANSMISSION,
                                     description="retransmission", context={"deduplication_id": "x"})),
        ("location", integration.LocationEvent(deduplication_id="3ac7e3c4-4401-4b8d-9386-a5c902f9202d",
                                               device_info=_info(),
                                               location=common.Location(latitude=16.06, longitude=108.22))),
    ],
)
def test_every_event_type_in_both_encodings(kind: str, message: Any) -> None:
    message.time.FromDatetime(datetime(2026, 3, 14, 9, 0, 0, 123456, tzinfo=UTC))
    topic = ce.parse_topic(f"application/a/device/0102030405060708/event/{kind}")
    from_proto = ce.parse_event(topic, message.SerializeToString())
    from_json = ce.parse_event(topic, json_format.MessageToJson(message).encode())
    assert from_proto == from_json
    assert from_proto.time == datetime(2026, 3, 14, 9, 0, 0, 123456, tzinfo=UTC)
    if kind == "status":
        assert isinstance(from_proto, ce.StatusEvent) and from_proto.battery_level == 81.5
    if kind == "log":
        assert isinstance(from_proto, ce.LogEvent) and from_proto.code == "UPLINK_F_CNT_RETRANSMISSION"


@pytest.mark.parametrize(
    ("topic", "fragment"),
    [
        ("application/a/device/0102030405060708/event/integration", "unknown event type"),
        ("application/a/device/xyz/event/up", "malformed DevEUI"),
        ("gateway/0102030405060708/event/up", "not application"),
        ("application/a/device/0102030405060708/command/down", "not application"),
    ],
)
def test_bad_topics(topic: str, fragment: str) -> None:
    with pytest.raises(ce.EventParseError, match=fragment):
        ce.parse_topic(topic)


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b'{"deduplicationId": ', "not valid JSON"),
        (b'{"applicationID": "1", "devEUI": "AQIDBAUGBwg=", "objectJSON": "{}"}', "no deviceInfo"),
        (b'{"deviceInfo": {"devEui": "ffffffffffffffff"}, "deduplicationId": "'
         b'3ac7e3c4-4401-4b8d-9386-a5c902f9202d"}', "does not match topic"),
        (b'{"deviceInfo": {"devEui": "0102030405060708"}, "deduplicationId": "nope"}', "Invalid UUID"),
        (b'{"deviceInfo": {"devEui": "0102030405060708"}}', "without deduplicationId"),
        (b'{"deviceInfo": {"devEui": "0102030405060708"}, "fCnt": "many"}', "does not fit"),
        (b"\xff\xff\xff\xff", "neither JSON nor"),
    ],
)
def test_bad_payloads_are_skippable_with_a_reason(payload: bytes, fragment: str) -> None:
    topic = ce.parse_topic("application/a/device/0102030405060708/event/up")
    with pytest.raises(ce.EventParseError, match=fragment) as info:
        ce.parse_event(topic, payload)
    assert info.value.stage == "parse"


_STRUCT_TO_PROTO = {
    **{spec.struct: spec.message for spec in ce.EVENT_SPECS.values()},
    ce.DeviceInfo: integration.DeviceInfo,
    ce.RxInfo: gw.UplinkRxInfo, ce.TxInfo: gw.UplinkTxInfo, ce.Location: common.Location,
    ce.LoraModulation: gw.LoraModulationInfo, ce.Modulation: gw.Modulation,
}


@pytest.mark.parametrize("struct", list(_STRUCT_TO_PROTO), ids=lambda s: s.__name__)
def test_struct_field_names_are_chirpstack_json_names(struct: type[msgspec.Struct]) -> None:
    """The msgspec fast path must read exactly the names the chirpstack-api descriptors define."""
    json_names = {f.json_name for f in _STRUCT_TO_PROTO[struct].DESCRIPTOR.fields}
    encoded = {f.encode_name for f in msgspec.structs.fields(struct)}
    assert encoded <= json_names, encoded - json_names


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=400), kind=st.sampled_from(ce.EVENT_TYPES))
def test_garbage_never_crashes_the_parser(payload: bytes, kind: str) -> None:
    topic = ce.parse_topic(f"application/a/device/0102030405060708/event/{kind}")
    try:
        ce.parse_event(topic, payload)
    except ce.EventParseError as err:
        assert err.reason


@settings(max_examples=200, deadline=None)
@given(doc=st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                    max_size=4),
                        max_leaves=20))
def test_garbage_json_never_crashes_the_parser(doc: Any) -> None:
    topic = ce.parse_topic("application/a/device/0102030405060708/event/up")
    payload = json.dumps({"deviceInfo": {"devEui": "0102030405060708"}, "object": doc, "rxInfo": doc}).encode()
    try:
        ce.parse_event(topic, payload)
    except ce.EventParseError as err:
        assert err.reason


def test_the_event_type_literal_is_the_table() -> None:
    assert typing.get_args(ce.EventType) == ce.EVENT_TYPES
    assert all(name == spec.name for name, spec in ce.EVENT_SPECS.items())
