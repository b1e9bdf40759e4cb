"""The edge of the ingest, pure: strict ids, ranges, text cleaning, time windows, and SQLSTATE sorting."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import errors

from gateways.chirpstack import (
    MAX_OBJECT_DEPTH,
    EventParseError,
    StatusEvent,
    UplinkEvent,
    clean_text,
    parse_event,
    parse_topic,
)
from gateways.database import DatabaseFailed, DatabaseUnavailable, RowRefused, classify, translate
from gateways.mqtt import InboundMessage
from ingest.normalise import Quality, normalise
from ingest.pipeline import EdgeLimits, parse_messages
from tests.hostile_events import encode, sample, topic_for

TOPIC = "application/8b1e7f2a-3c4d-4e5f-9a6b-7c8d9e0f1a2b/device/{}/event/{}"


def _parse(payload: dict[str, Any], encoding: str = "json") -> UplinkEvent:
    body = encode(payload, encoding)
    assert body is not None
    event = parse_event(parse_topic(topic_for(payload)), body)
    assert isinstance(event, UplinkEvent)
    return event


@pytest.mark.parametrize("state", ["08006", "08P01", "53100", "53200", "57P01", "57014", "40001", "40P01"])
def test_connection_class_sqlstates_retry(state: str) -> None:
    err = errors.lookup(state)()
    assert classify(err) == "retry"
    assert isinstance(translate(err, "x"), DatabaseUnavailable)


@pytest.mark.parametrize("state", ["22021", "22P05", "22003", "22001", "23505", "23514", "23502", "54000"])
def test_data_and_integrity_sqlstates_are_a_refused_row(state: str) -> None:
    err = errors.lookup(state)()
    assert classify(err) == "refused"
    refused = translate(err, "x")
    assert isinstance(refused, RowRefused) and refused.stage == "store" and state in refused.reason


@pytest.mark.parametrize("state", ["42P01", "42501", "42703", "28P01", "3D000", "XX000", "0A000"])
def test_other_sqlstates_are_fatal(state: str) -> None:
    err = errors.lookup(state)()
    assert classify(err) == "fatal"
    assert isinstance(translate(err, "x"), DatabaseFailed)


def test_errors_without_sqlstate_are_sorted_by_kind() -> None:
    # psycopg's own refusal of a NUL in a text parameter, before anything is sent.
    assert classify(psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")) == "refused"
    assert classify(psycopg.OperationalError("connection lost")) == "retry"
    assert classify(psycopg.InterfaceError("the connection is closed")) == "retry"
    assert classify(psycopg.ProgrammingError("bad call")) == "fatal"


@pytest.mark.parametrize("eui", ["0x0000000000001f", "\uff10" * 14 + "\uff11\uff12", " 00000000000001f",
                                 "0000_0000_000001", "+00000000000001f", "00000000000001fg", "0000000000001f",
                                 "\u0660" * 16])
def test_deveui_must_be_16_ascii_hex_digits(eui: str) -> None:
    with pytest.raises(EventParseError, match="DevEUI"):
        parse_topic(TOPIC.format(eui, "up"))
    payload = sample(0, dev_eui=eui)
    body = encode(payload)
    assert body is not None
    with pytest.raises(EventParseError, match="devEui"):
        parse_event(parse_topic(topic_for(sample(0))), body)


def test_deveui_and_gateway_ids_are_case_folded() -> None:
    payload = sample(0, dev_eui="70B3D57ED0054A1F")
    payload["rxInfo"][0]["gatewayId"] = "0016C001F153A14C"
    event = parse_event(parse_topic(topic_for(payload)), encode(payload) or b"")
    assert isinstance(event, UplinkEvent) and event.device_info is not None
    assert event.device_info.dev_eui == "70b3d57ed0054a1f"
    assert event.rx_info[0].gateway_id == "0016c001f153a14c"


@pytest.mark.parametrize(("path", "value"), [
    (("fPort",), 256), (("fPort",), -1), (("fCnt",), 2**32), (("fCnt",), -1), (("dr",), 16),
    (("rxInfo", 0, "rssi"), -201), (("rxInfo", 0, "rssi"), 51), (("rxInfo", 0, "snr"), 50.5),
    (("txInfo", "frequency"), 2**32), (("txInfo", "modulation", "lora", "spreadingFactor"), 13),
])
def test_bounded_fields_are_refused_outside_their_range(path: tuple[str | int, ...], value: float) -> None:
    payload = sample(0)
    target: Any = payload
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    with pytest.raises(EventParseError, match="outside"):
        _parse(payload)


def test_bounds_themselves_are_accepted() -> None:
    payload = sample(0)
    payload.update(fPort=255, fCnt=2**32 - 1, dr=15)
    payload["rxInfo"][0].update(rssi=-200, snr=-50.0)
    event = _parse(payload)
    assert (event.f_port, event.f_cnt, event.dr, event.rx_info[0].rssi) == (255, 2**32 - 1, 15, -200)


def test_status_margin_is_lorawan_s_six_bit_range() -> None:
    def status(margin: int) -> bytes:
        return json.dumps({"deduplicationId": "5f0b1c3e-8a4d-4f2b-9c61-2d7e3a9b0c44", "margin": margin,
                           "batteryLevel": 80.0, "deviceInfo": {"devEui": "70b3d57ed0054a1f"}}).encode()

    topic = parse_topic(TOPIC.format("70b3d57ed0054a1f", "status"))
    assert isinstance(parse_event(topic, status(31)), StatusEvent)
    with pytest.raises(EventParseError, match="margin"):
        parse_event(topic, status(40_000))


def test_object_depth_is_bounded() -> None:
    payload = sample(0)
    deep: Any = 1.0
    for _ in range(MAX_OBJECT_DEPTH):
        deep = {"x": deep}
    payload["object"] = deep  # MAX_OBJECT_DEPTH levels of dicts: accepted
    assert _parse(payload).object is not None
    payload["object"] = {"x": deep}
    with pytest.raises(EventParseError, match="deeper"):
        _parse(payload)


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_control_characters_leave_every_text_field(encoding: str) -> None:
    payload = sample(0)
    payload["deviceInfo"]["deviceName"] = "a\x00b\x1fc\x7fd\x85e\x9ff"
    payload["deviceInfo"]["tags"] = {"k\x00": "v\x01"}
    payload["devAddr"] = "01fa\x003b7c"
    event = _parse(payload, encoding)
    assert event.device_info is not None
    assert event.device_info.device_name == "abcdef"
    assert event.device_info.tags == {"k": "v"}
    assert event.dev_addr == "01fa3b7c"


def test_text_outside_the_control_ranges_is_kept() -> None:
    assert clean_text("Sơn Trà – 22,5 °C ✓") == "Sơn Trà – 22,5 °C ✓"
    assert clean_text("tab\there\nline\u0085end\ud800") == "tabherelineend"


def test_a_normalised_integer_beyond_the_double_range_is_flagged() -> None:
    out = normalise({"temperature": 10**400, "humidity": -(10**400)})
    assert [(r.metric.name, r.quality) for r in out.readings] == [
        ("temperature", Quality.NOT_FINITE), ("humidity", Quality.NOT_FINITE)]


def _message(payload: dict[str, Any], received: float | None = None, body: bytes | None = None,
             original_size: int = 0) -> InboundMessage:
    return InboundMessage(topic_for(payload), body if body is not None else encode(payload) or b"", 1,
                          received if received is not None else time.time(), 0, False, original_size)


def test_event_times_outside_the_window_take_the_receive_time() -> None:
    limits = EdgeLimits(future_s=600.0, past_s=86400.0)
    now = time.time()
    received = datetime.fromtimestamp(now, UTC)
    cases = {"ok": received - timedelta(hours=23), "future": received + timedelta(minutes=11),
             "past": received - timedelta(hours=25), "edge": received + timedelta(minutes=9)}
    messages = []
    for when in cases.values():
        payload = sample(0)
        payload["time"] = when.isoformat()
        messages.append(_message(payload, now))
    parsed, dead = parse_messages(messages, limits)
    assert dead == []
    got = {name: (p.event.time, p.claimed) for name, p in zip(cases, parsed, strict=True)}
    assert got["ok"] == (cases["ok"], None)
    assert got["edge"] == (cases["edge"], None)
    assert got["future"] == (received, cases["future"])
    assert got["past"] == (received, cases["past"])


def test_oversized_events_keep_their_first_bytes_and_a_size_aware_identity() -> None:
    limits = EdgeLimits(max_event_bytes=4096, keep_bytes=100)
    payload = sample(0)
    big = _message(payload, body=b"{" + b" " * 5000 + b"}")
    cut = _message(payload, body=b"x" * 100, original_size=200 * 1024 * 1024)  # cut at receive by the consumer
    same_start = _message(payload, body=b"x" * 100, original_size=300 * 1024 * 1024)
    parsed, dead = parse_messages([big, cut, same_start], limits)
    assert parsed == []
    assert [len(d.payload) for d in dead] == [100, 100, 100]
    assert "209715200 bytes" in dead[1].reason and "first 100 bytes" in dead[1].reason
    assert dead[1].fingerprint != dead[2].fingerprint  # two different messages, not one dead letter
