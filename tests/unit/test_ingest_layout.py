"""The ingest's shape: one declared row layout that the pipeline follows, a stated surface per module, no psycopg."""

from __future__ import annotations

import ast
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from chirpstack_api import integration
from google.protobuf import json_format

from gateways.mqtt import InboundMessage
from ingest.batching import MessageBuffer
from ingest.codecs.library import CodecLibrary
from ingest.devices import DeviceRef
from ingest.pipeline import build_rows, parse_messages
from ingest.rows import (
    DEVICE_EVENT,
    EVENT_DEVICE_ID,
    EVENT_KEY,
    EVENT_TYPE,
    MEASUREMENT,
    MEASUREMENT_DEVICE_ID,
    MEASUREMENT_METRIC_ID,
    MEASUREMENT_QUALITY,
    MEASUREMENT_VALUE,
    UPLINK,
    UPLINK_DECODE_STATUS,
    UPLINK_DEDUPLICATION_ID,
    UPLINK_DEVICE_ID,
    UPLINK_EVENT_TIME,
    UPLINK_GATEWAY_ID,
    UPLINK_RSSI,
    UPLINK_SNR,
    UPLINK_TIME,
    UPLINK_ZONE_ID,
)
from ioc_core.metrics import VOCABULARY
from tests.events import uplink

INGEST = Path(__file__).resolve().parents[2] / "ingest"
MODULES = sorted(p for p in INGEST.rglob("*.py") if "codecs" not in p.relative_to(INGEST).parts)
DEV_EUI = "a84041000181c4f1"


def _message(topic: str, payload: bytes, mid: int) -> InboundMessage:
    return InboundMessage(topic, payload, mid, time.time(), 1, False)


def _status_event() -> tuple[str, bytes]:
    info = integration.DeviceInfo(tenant_id="52f14cd4-c6f1-4fbd-8f87-4025e1d49242",
                                  application_id="8b1e7f2a-3c4d-4e5f-9a6b-7c8d9e0f1a2b", dev_eui=DEV_EUI)
    event = integration.StatusEvent(deduplication_id=str(uuid.uuid4()), device_info=info, margin=12,
                                    battery_level=55.5)
    topic = f"application/8b1e7f2a-3c4d-4e5f-9a6b-7c8d9e0f1a2b/device/{DEV_EUI}/event/status"
    return topic, json_format.MessageToJson(event, indent=None).encode()


def test_the_rows_the_pipeline_builds_follow_the_declared_layout() -> None:
    messages = [_message(*uplink(DEV_EUI, 7, bytes([1, 0x67, 0x01, 0x10, 2, 0x68, 0x50]), rssi=-77, snr=6.5), 1),
                _message(*_status_event(), 2)]
    parsed, dead = parse_messages(messages)
    assert not dead
    device = DeviceRef(id=41, dev_eui=DEV_EUI, zone_id=3, codec_id="cayenne-lpp", status="registered")
    batch = build_rows(parsed, {DEV_EUI: device}, {"0016c001f153a14c": 9}, CodecLibrary.discover(),
                       messages=messages)
    assert batch.messages == messages and not batch.dead_letters

    (up,) = batch.uplinks
    assert len(up) == len(UPLINK.columns) == len(UPLINK.types)
    assert isinstance(up[UPLINK_TIME], datetime) and up[UPLINK_EVENT_TIME] is None
    assert (up[UPLINK_DEVICE_ID], up[UPLINK_ZONE_ID], up[UPLINK_GATEWAY_ID]) == (41, 3, 9)
    assert (up[UPLINK_RSSI], up[UPLINK_SNR], up[UPLINK_DECODE_STATUS]) == (-77, 6.5, "ok")
    readings = batch.uplink_measurements[up[UPLINK_DEDUPLICATION_ID]]
    assert {(r[MEASUREMENT_METRIC_ID], r[MEASUREMENT_VALUE]) for r in readings} == {
        (VOCABULARY["temperature"].id, 27.2), (VOCABULARY["humidity"].id, 40.0)}

    (event,) = batch.events
    assert len(event) == len(DEVICE_EVENT.columns) == len(DEVICE_EVENT.types)
    assert (event[EVENT_DEVICE_ID], event[EVENT_TYPE]) == (41, "status")
    battery_and_margin = batch.event_measurements[event[EVENT_KEY]]
    for row in [*readings, *battery_and_margin]:
        assert len(row) == len(MEASUREMENT.columns) == len(MEASUREMENT.types)
        assert row[MEASUREMENT_DEVICE_ID] == 41 and row[MEASUREMENT_QUALITY] == 0


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(INGEST)))
def test_every_ingest_module_states_its_purpose_and_surface_and_leaves_psycopg_to_gateways(path: Path) -> None:
    tree = ast.parse(path.read_text())
    assert ast.get_docstring(tree), "a module docstring"
    names = {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
             if isinstance(t, ast.Name)}
    names |= {node.target.id for node in tree.body if isinstance(node, ast.AnnAssign)
              and isinstance(node.target, ast.Name)}
    assert "__all__" in names, "a stated public surface (__all__)"
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {m for m in imported if m.split(".")[0] in {"psycopg", "psycopg_pool"}}, \
        "psycopg is imported in gateways/ only"


def test_a_full_batch_is_taken_at_once_and_the_rest_drains_in_batches() -> None:
    buffer = MessageBuffer(batch_size=3, batch_age_s=3600.0)
    messages = [_message("t", bytes([n]), n) for n in range(8)]
    for m in messages:
        buffer.add(m)
    never = threading.Event()
    assert buffer.take(never, lambda: False) == messages[:3]
    assert list(buffer.drain()) == [messages[3:6], messages[6:]]
    assert list(buffer.drain()) == []


def test_a_stop_hands_back_what_waits_without_waiting_for_the_batch_to_fill() -> None:
    buffer = MessageBuffer(batch_size=100, batch_age_s=3600.0)
    buffer.add(first := _message("t", b"1", 1))
    stop = threading.Event()
    stop.set()
    assert buffer.take(stop, lambda: False) == [first]
    assert buffer.take(stop, lambda: False) == []
