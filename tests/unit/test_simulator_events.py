"""The simulated ChirpStack event stream: shape, determinism, ratios, and agreement with the wire renderer."""

from __future__ import annotations

import base64
import importlib
import itertools
import json
import re
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from chirpstack_api import integration
from google.protobuf import json_format

from device_simulators.events import EventStream, StreamOptions, generate
from device_simulators.fleet import Fleet, build_fleet
from device_simulators.messages import SimMessage
from device_simulators.payloads import FORMATS
from gateways.chirpstack import EVENT_MESSAGES, EVENT_TYPES, render_json
from ingest.codecs.builtin.ioc_water_level import codec as water_level_codec
from ingest.normalise import Quality, normalise

TOPIC = re.compile(
    r"^application/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/device/[0-9a-f]{16}"
    rf"/event/({'|'.join(EVENT_TYPES)})$"
)


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return build_fleet(150, seed=7)


def _take(fleet: Fleet, n: int, **options: Any) -> tuple[list[SimMessage], EventStream]:
    stream = EventStream(fleet, StreamOptions(**options))
    return list(itertools.islice(stream, n)), stream


def _fields(message: SimMessage) -> tuple[int, bytes]:
    """fCnt and data of an uplink, quickly (json_format is slow for thousands of messages)."""
    if message.encoding == "json":
        row = json.loads(message.payload)
        return row["fCnt"], base64.b64decode(row["data"])
    event = integration.UplinkEvent.FromString(message.payload)
    return event.f_cnt, event.data


def _parse(message: SimMessage) -> Any:
    cls = EVENT_MESSAGES[message.event]
    if message.encoding == "json":
        return json_format.Parse(message.payload, cls(), ignore_unknown_fields=True)
    return cls.FromString(message.payload)


def test_same_seed_same_bytes(fleet: Fleet) -> None:
    a, _ = _take(fleet, 3000, seed=3, scenario="faults", encoding="mixed")
    b, _ = _take(fleet, 3000, seed=3, scenario="faults", encoding="mixed")
    assert a == b
    c, _ = _take(fleet, 3000, seed=4, scenario="faults", encoding="mixed")
    assert [m.payload for m in a] != [m.payload for m in c]


def test_topics_and_payloads_parse_in_both_encodings(fleet: Fleet) -> None:
    messages, _ = _take(fleet, 4000, encoding="mixed", scenario="flood")
    by_eui = fleet.by_eui()
    encodings: Counter[str] = Counter()
    for message in messages:
        match = TOPIC.match(message.topic)
        assert match is not None and match.group(1) == message.event, message.topic
        device = by_eui[message.dev_eui]
        assert message.topic.startswith(f"application/{device.application_id}/device/{device.dev_eui}/")
        event = _parse(message)
        encodings[message.encoding] += 1
        assert event.device_info.dev_eui == message.dev_eui
        assert event.device_info.tags["codec"] == device.codec_id
        if message.deduplication_id is not None:
            assert event.deduplication_id == message.deduplication_id
    assert set(encodings) == {"json", "protobuf"}


def test_every_event_type_appears(fleet: Fleet) -> None:
    messages, _ = _take(fleet, 20_000, scenario="faults", downlink_ratio=0.3, retransmission_ratio=0.01)
    assert {m.event for m in messages} == {"up", "join", "status", "log", "ack", "txack"}
    counts = Counter(m.event for m in messages)
    assert counts["up"] > 0.8 * len(messages)


def test_json_is_what_the_generic_renderer_writes(fleet: Fleet) -> None:
    # Same seed, two encodings: the fast JSON templates must equal the gateways.chirpstack.wire rendering of the
    # protobuf twin, and parsing the JSON must give the same message.
    options = {"seed": 11, "scenario": "flood", "malformed_ratio": 0.0, "duplicate_ratio": 0.05}
    as_json, _ = _take(fleet, 3000, encoding="json", **options)
    as_protobuf, _ = _take(fleet, 3000, encoding="protobuf", **options)
    for j, p in zip(as_json, as_protobuf, strict=True):
        assert (j.topic, j.event, j.deduplication_id) == (p.topic, p.event, p.deduplication_id)
        message = EVENT_MESSAGES[p.event].FromString(p.payload)
        assert render_json(message) == j.payload
        assert _parse(j) == message


def test_uplinks_carry_codec_payloads(fleet: Fleet) -> None:
    messages, _ = _take(fleet, 2000, malformed_ratio=0.0)
    by_eui = fleet.by_eui()
    seen = set()
    for message in messages:
        if message.event != "up":
            continue
        event = _parse(message)
        device = by_eui[message.dev_eui]
        assert event.f_port == FORMATS[device.model_id].fport
        assert event.region_config_id == "as923_2"
        assert 921_400_000 <= event.tx_info.frequency <= 922_800_000
        assert 7 <= event.tx_info.modulation.lora.spreading_factor <= 12
        assert 1 <= len(event.rx_info) <= 3
        assert all(-140 < rx.rssi < -20 and rx.location.latitude > 15.9 for rx in event.rx_info)
        assert re.fullmatch(r"[0-9a-f]{8}", event.dev_addr)
        if device.codec_id == "ioc-water-level":
            assert water_level_codec.decode(event.data, event.f_port).ok
        if device.chirpstack_codec == "CAYENNE_LPP":
            assert set(json_format.MessageToDict(event.object)) == {"temperatureSensor", "humiditySensor",
                                                                   "analogInput"}  # fmt: skip
            seen.add("object")
        else:
            assert not event.HasField("object")
    assert "object" in seen


def test_join_before_first_uplink_and_fcnt_counts_from_zero(fleet: Fleet) -> None:
    messages, _ = _take(fleet, 3000, loss_ratio=0.0)
    first: dict[str, str] = {}
    counters: dict[str, list[int]] = {}
    for message in messages:
        first.setdefault(message.dev_eui, message.event)
        if message.event == "up" and not message.malformed and not message.duplicate:
            counters.setdefault(message.dev_eui, []).append(_parse(message).f_cnt)
    assert set(first.values()) == {"join"}
    for values in counters.values():
        assert values == list(range(values[0], values[0] + len(values)))
        assert values[0] == 0
    no_joins, _ = _take(fleet, 500, joins=False)
    assert "join" not in {m.event for m in no_joins}


def test_loss_leaves_fcnt_gaps(fleet: Fleet) -> None:
    messages, stream = _take(fleet, 10_000, loss_ratio=0.1, duplicate_ratio=0.0, malformed_ratio=0.0)
    gaps = 0
    last: dict[str, int] = {}
    for message in messages:
        if message.event != "up":
            continue
        f_cnt, _ = _fields(message)
        if message.dev_eui in last:
            gaps += f_cnt - last[message.dev_eui] - 1
        last[message.dev_eui] = f_cnt
    assert stream.stats.lost / stream.stats.uplinks == pytest.approx(0.1, abs=0.02)
    assert gaps == pytest.approx(stream.stats.lost, rel=0.1)


def test_duplicates_repeat_bytes_and_ids(fleet: Fleet) -> None:
    messages, _ = _take(fleet, 10_000, duplicate_ratio=0.05, malformed_ratio=0.0)
    duplicates = [m for m in messages if m.duplicate]
    assert len(duplicates) / len(messages) == pytest.approx(0.05, abs=0.015)
    originals = {(m.topic, m.payload) for m in messages if not m.duplicate}
    assert all((d.topic, d.payload) in originals for d in duplicates)
    ups = Counter(m.deduplication_id for m in messages if m.event == "up")
    assert any(n == 2 for n in ups.values())


def test_malformed_messages_do_not_parse_or_do_not_decode(fleet: Fleet) -> None:
    messages, _ = _take(fleet, 10_000, malformed_ratio=0.05, duplicate_ratio=0.0, encoding="mixed")
    broken = [m for m in messages if m.malformed]
    assert len(broken) / len(messages) == pytest.approx(0.05, abs=0.015)
    by_eui = fleet.by_eui()
    kinds: Counter[str] = Counter()
    for message in broken:
        assert TOPIC.match(message.topic)
        try:
            event = _parse(message)
        except Exception:
            kinds["unparsable"] += 1
            continue
        if not event.HasField("device_info"):
            kinds["not a v4 event"] += 1  # a ChirpStack v3 payload, or garbage that happens to parse
            continue
        assert message.event == "up"
        device = by_eui[message.dev_eui]
        assert len(event.data) < len(FORMATS[device.model_id].encode({"battery_voltage": 3.6})), message
        kinds["short payload"] += 1
    assert set(kinds) >= {"unparsable", "short payload"}


def test_cayenne_short_payload_brings_a_codec_log(fleet: Fleet) -> None:
    messages, _ = _take(fleet, 20_000, malformed_ratio=0.2, duplicate_ratio=0.0)
    logs = [m for m in messages if m.event == "log" and not m.malformed]
    codec_logs = [_parse(m) for m in logs]
    assert any(e.code == integration.UPLINK_CODEC and e.level == integration.ERROR for e in codec_logs)
    for event in codec_logs:
        assert set(event.context) == {"deduplication_id"}


def test_status_shares_the_uplinks_deduplication_id(fleet: Fleet) -> None:
    messages, _ = _take(fleet, 6000, status_interval_s=1800.0, malformed_ratio=0.0)
    ups = {m.deduplication_id for m in messages if m.event == "up"}
    statuses = [m for m in messages if m.event == "status"]
    assert statuses
    by_eui = fleet.by_eui()
    for message in statuses:
        assert message.deduplication_id in ups
        event = _parse(message)
        assert -32 <= event.margin <= 31
        if by_eui[message.dev_eui].battery_powered:
            assert not event.external_power_source and 0 < event.battery_level <= 100
        else:
            assert event.external_power_source and event.battery_level == 0


def test_downlinks_give_txack_then_ack(fleet: Fleet) -> None:
    messages, _ = _take(fleet, 10_000, downlink_ratio=0.5, malformed_ratio=0.0, duplicate_ratio=0.0)
    sent: dict[str, int] = {}
    acked = 0
    for position, message in enumerate(messages):
        if message.event == "txack":
            txack = _parse(message)
            assert txack.tx_info.timing.HasField("immediately") and message.deduplication_id is None
            sent[txack.queue_item_id] = position
        elif message.event == "ack":
            assert sent[_parse(message).queue_item_id] < position  # the gateway sends before the device acks
            acked += 1
    assert acked > 10 and len(sent) - acked <= 3  # the last few acks may lie beyond the cut
    assert all(m.deduplication_id is None for m in messages if m.event == "log")


def test_faults_scenario_silences_devices_and_sends_out_of_range_values() -> None:
    fleet = build_fleet(100, seed=2)
    messages, stream = _take(fleet, 8000, scenario="faults", seed=2)
    assert stream.stats.silenced > 0
    last_seen = {m.dev_eui: m.time for m in messages}
    end = messages[-1].time
    assert sum(end - t > 3 * 3600 for t in last_seen.values()) >= 3
    flagged = 0
    by_eui = fleet.by_eui()
    for message in messages:
        if message.event != "up" or message.malformed:
            continue
        device = by_eui[message.dev_eui]
        if device.codec_id == "cayenne-lpp":
            continue
        module: Any = importlib.import_module(f"ingest.codecs.builtin.{device.codec_id.replace('-', '_')}.codec")
        f_port = FORMATS[device.model_id].fport
        result = module.decode(_fields(message)[1], f_port)
        flagged += any(r.quality is Quality.OUT_OF_RANGE for r in normalise(result.data).readings)
    assert flagged > 20


def test_options_are_checked(fleet: Fleet) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        StreamOptions(loss_ratio=1.5)
    with pytest.raises(ValueError, match="unknown scenario"):
        StreamOptions(scenario="tsunami")
    with pytest.raises(ValueError, match="timezone"):
        StreamOptions(start=datetime(2025, 1, 1))


def test_times_follow_the_start(fleet: Fleet) -> None:
    start = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    messages, _ = _take(fleet, 1000, start=start)
    assert all(start.timestamp() - 1 <= m.time <= start.timestamp() + 4 * 3600 for m in messages)
    # Roughly in time order: ChirpStack's clock, the dedup window and late duplicates shift a few seconds.
    times = [m.time for m in messages]
    assert all(a <= b + 6.0 for a, b in itertools.pairwise(times))
    first = json.loads(next(m.payload for m in messages if m.encoding == "json" and m.event == "up"))
    assert first["time"].startswith("2026-01-02T03:") and first["time"].endswith("+00:00")


def test_generate_is_an_endless_stream(fleet: Fleet) -> None:
    stream = generate(fleet)
    assert sum(1 for _ in itertools.islice(stream, 100)) == 100
    empty = generate(build_fleet(0))
    assert list(empty) == []
