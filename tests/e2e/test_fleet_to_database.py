"""Simulator → broker → ingest → database: the Da Nang fleet with faults, both encodings, nothing lost."""

from __future__ import annotations

import itertools
import threading

import psycopg
import pytest

from device_simulators.events import StreamOptions, generate
from device_simulators.fleet import build_fleet
from device_simulators.publisher import publish_to_broker
from gateways import chirpstack as ce
from gateways.local_mosquitto import LocalMosquitto
from ingest.codecs.library import CodecLibrary
from ingest.processor import BatchProcessor
from ingest.worker import IngestWorker, WorkerConfig
from ioc_core.settings import MqttUrl
from tests.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.both_modes]


def test_faulty_fleet_every_message_is_stored_or_a_dead_letter(db_url: str, broker: LocalMosquitto) -> None:
    fleet = build_fleet(120, seed=7)
    options = StreamOptions(seed=7, scenario="faults", encoding="mixed", duplicate_ratio=0.02,
                            malformed_ratio=0.02, loss_ratio=0.01)
    messages = list(itertools.islice(generate(fleet, options), 6000))
    config = WorkerConfig(name="fleet", client_id="fleet-worker", topic_filter="application/+/device/+/event/+",
                          share_group="ioc-ingest", batch_size=500, batch_age_s=0.05, receive_maximum=5000,
                          session_expiry_s=600, stats_interval_s=1.0)
    worker = IngestWorker(config, MqttUrl.parse(broker.url), BatchProcessor(db_url, CodecLibrary.discover()))
    stop = threading.Event()
    runner = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    runner.start()
    assert worker.wait_ready(30)
    publish_to_broker(messages, MqttUrl.parse(broker.url), client_id="fleet-pub", rate=0)
    eventually(lambda: worker.stats.totals.received >= len(messages), timeout_s=90)
    stop.set()
    runner.join(30)
    assert worker.stats.totals.received == len(messages)

    # What our own parser accepts must be stored; what it rejects must be a dead letter, raw bytes and all.
    uplink_ids: set[str] = set()
    rejected: set[bytes] = set()
    for m in messages:
        try:
            event = ce.parse_event(ce.parse_topic(m.topic), m.payload)
        except ce.EventParseError:
            rejected.add(m.payload)
            continue
        if isinstance(event, ce.UplinkEvent):
            uplink_ids.add(str(event.deduplication_id))
    assert rejected and len(uplink_ids) > 3000
    with psycopg.connect(db_url) as conn:
        stored = {str(r[0]) for r in conn.execute("SELECT deduplication_id FROM uplinks")}
        assert stored == uplink_ids
        dead = {bytes(r[0]) for r in conn.execute("SELECT payload FROM dead_letters WHERE stage = 'parse'")}
        assert rejected <= dead
        decode_failures = conn.execute(
            "SELECT count(*) FROM uplinks WHERE decode_status = 'error'").fetchone()
        letters = conn.execute("SELECT count(*) FROM dead_letters WHERE stage = 'decode'").fetchone()
        assert decode_failures is not None and letters is not None and decode_failures[0] == letters[0] > 0
        kinds = {r[0] for r in conn.execute(
            "SELECT DISTINCT m.name FROM measurements v JOIN metrics m ON m.id = v.metric_id")}
        assert {"water_level", "rainfall", "pm2_5", "fill_level", "occupied", "battery"} <= kinds
        events = {r[0] for r in conn.execute("SELECT DISTINCT event_type FROM device_events")}
        assert {"join", "status"} <= events
