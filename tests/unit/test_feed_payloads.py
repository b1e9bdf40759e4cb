"""The open feed's payloads: SenML packs, topics that cannot be abused, status events, raw PUBLISH packets."""

from __future__ import annotations

import json
import re

import pytest

from gateways.mqtt import publish_packet
from ingest.feed.payloads import (
    BASE_NAME,
    METADATA_NAMES,
    FeedDevice,
    SenMLPacker,
    status_event,
    status_topic,
    summary_topic,
    valid_prefix,
)
from ioc_core.kinds import KINDS
from ioc_core.metrics import VOCABULARY

# RFC 8428 section 4.5.1: what a resolved name may hold.
SENML_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:./_-]*$")
ALLOWED_FIELDS = {"bn", "bt", "n", "u", "v", "vs"}


def _device(**changes: object) -> FeedDevice:
    fields: dict[str, object] = dict(prefix="ioc/v1", id=7, dev_eui="70b3d5e75e000a01", name="Cầu Rồng \"east\" gauge",
                                     kind="water_level", zone="hai-chau", zone_name="Hải Châu", latitude=16.0611,
                                     longitude=108.2272)
    fields.update(changes)
    device = FeedDevice.of(**fields)  # type: ignore[arg-type]
    assert device is not None
    return device


def _ids(*names: str) -> list[int]:
    return [VOCABULARY[n].id for n in names]


def test_pack_is_senml_with_units_from_the_vocabulary_and_the_device_described() -> None:
    device = _device()
    when = 1773480413.589793
    pack = json.loads(SenMLPacker().pack(device, when, zip(_ids("water_level", "battery_voltage"), [1.42, 3.61],
                                                            strict=True)))
    assert pack[0] == {"bn": "urn:dev:deveui:70b3d5e75e000a01:", "bt": when, "n": "water_level", "u": "m", "v": 1.42}
    assert pack[1] == {"n": "battery_voltage", "u": "V", "v": 3.61}
    assert pack[2:] == [
        {"n": "name", "vs": "Cầu Rồng \"east\" gauge"},
        {"n": "kind", "vs": "water_level"},
        {"n": "zone", "vs": "hai-chau"},
        {"n": "zone_name", "vs": "Hải Châu"},
        {"n": "lat", "u": "lat", "v": 16.0611},
        {"n": "lon", "u": "lon", "v": 108.2272},
    ]
    assert device.topic == "ioc/v1/hai-chau/water_level/70b3d5e75e000a01"


def test_every_metric_packs_with_its_unit_and_a_valid_senml_name() -> None:
    device = _device(latitude=None, longitude=None)
    readings = [(m.id, float(m.minimum)) for m in VOCABULARY.values()]
    pack = json.loads(SenMLPacker().pack(device, 0.5, readings))
    base = pack[0]["bn"]
    measured = pack[: len(readings)]
    assert [(r["n"], r["u"]) for r in measured] == [(m.name, m.unit) for m in VOCABULARY.values()]
    assert [r["n"] for r in pack[len(readings):]] == ["name", "kind", "zone", "zone_name"]  # no position: left out
    for record in pack:
        assert set(record) <= ALLOWED_FIELDS
        assert SENML_NAME.fullmatch(base + record["n"]), record


def test_the_device_description_cannot_be_mistaken_for_a_metric() -> None:
    assert not set(METADATA_NAMES) & set(VOCABULARY)


def test_a_pack_carries_nothing_but_the_reading_and_the_public_description() -> None:
    """No keys, tags, ChirpStack ids or payload bytes: the builder has no way to receive them."""
    device = _device()
    raw = SenMLPacker().pack(device, 1.0, [(VOCABULARY["water_level"].id, 2.0)])
    text = raw.decode()
    for secret in ("app_key", "nwk_key", "tags", "payload", "application", "profile", "dev_addr", "f_cnt",
                   "rssi", "codec", "deduplication"):
        assert secret not in text
    fields = {k for record in json.loads(raw) for k in record}
    assert fields == ALLOWED_FIELDS
    assert {r["n"] for r in json.loads(raw)} == {"water_level", *METADATA_NAMES}


def test_a_pack_needs_a_reading() -> None:
    with pytest.raises(ValueError):
        SenMLPacker().pack(_device(), 1.0, [])


@pytest.mark.parametrize(("kind", "zone", "dev_eui"), [
    ("water/level", "hai-chau", "70b3d5e75e000a01"),
    ("_status", "hai-chau", "70b3d5e75e000a01"),
    ("water_level", "hai chau", "70b3d5e75e000a01"),
    ("water_level", "#", "70b3d5e75e000a01"),
    ("water_level", "+", "70b3d5e75e000a01"),
    ("water_level", "Hai-Chau", "70b3d5e75e000a01"),
    ("water_level", "hai-chau", "70B3D5E75E000A01"),
    ("water_level", "hai-chau", "70b3d5e75e000a01/x"),
    (None, "hai-chau", "70b3d5e75e000a01"),
    ("water_level", None, "70b3d5e75e000a01"),
])
def test_devices_whose_description_is_no_safe_topic_level_stay_off_the_feed(
    kind: str | None, zone: str | None, dev_eui: str
) -> None:
    assert FeedDevice.of("ioc/v1", 1, dev_eui, "x", kind, zone, "X", 16.0, 108.0) is None


def test_every_known_kind_is_a_topic_level_that_cannot_collide_with_status_or_summary() -> None:
    for kind in KINDS:
        device = FeedDevice.of("ioc/v1", 1, "0000000000000001", "x", kind, "son-tra", "Sơn Trà", None, None)
        assert device is not None and not kind.startswith("_")
    assert status_topic("ioc/v1", "son-tra", "0000000000000001") == "ioc/v1/son-tra/_status/0000000000000001"
    assert summary_topic("ioc/v1", "son-tra") == "ioc/v1/son-tra/_summary"


@pytest.mark.parametrize(("prefix", "ok"), [
    ("ioc/v1", True), ("city/ioc-feed_2", True), ("ioc/#", False), ("ioc/+/v1", False), ("/ioc", False),
    ("ioc/", False), ("ioc//v1", False), ("$SYS/x", False), ("", False),
])
def test_prefixes(prefix: str, ok: bool) -> None:
    assert valid_prefix(prefix) is ok


@pytest.mark.parametrize(("previous", "health", "event"), [
    (None, "late", "snapshot"),
    ("reporting", "late", "late"),
    ("late", "silent", "silent"),
    ("silent", "reporting", "back"),
    ("late", "reporting", "back"),
    ("never_seen", "reporting", "first_seen"),
    ("reporting", "silent", "silent"),
])
def test_status_events(previous: str | None, health: str, event: str) -> None:
    assert status_event(previous, health) == event  # type: ignore[arg-type]


def test_base_name_is_a_device_urn() -> None:
    assert BASE_NAME.format("70b3d5e75e000a01") == "urn:dev:deveui:70b3d5e75e000a01:"


@pytest.mark.parametrize("size", [0, 10, 127, 128, 16_383, 16_384, 300_000])
@pytest.mark.parametrize("mqtt5", [False, True])
def test_raw_publish_packets_follow_the_mqtt_wire_format(size: int, mqtt5: bool) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    topic = "ioc/v1/hai-chau/water_level/70b3d5e75e000a01"
    packet = publish_packet(topic, payload, retain=True, mqtt5=mqtt5)
    assert packet[0] == 0x31
    length = shift = 0
    pos = 1
    while True:
        byte = packet[pos]
        pos += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    assert length == len(packet) - pos
    name_len = int.from_bytes(packet[pos : pos + 2], "big")
    assert packet[pos + 2 : pos + 2 + name_len].decode() == topic
    rest = packet[pos + 2 + name_len :]
    if mqtt5:
        assert rest[0] == 0  # no properties
        rest = rest[1:]
    assert rest == payload
    assert publish_packet(topic, payload, retain=False, mqtt5=mqtt5)[0] == 0x30
