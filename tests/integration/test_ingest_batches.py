"""The batch path against a real PostgreSQL: recorded samples, idempotency, dead letters, rollups, replay."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from chirpstack_api import integration
from google.protobuf import json_format

from gateways.mqtt import InboundMessage
from ingest.codecs.library import CodecLibrary
from ingest.dead_letters import list_dead_letters
from ingest.processor import BatchProcessor
from ingest.replay import replay
from tests.reference import CHIRPSTACK_SAMPLES

pytestmark = [pytest.mark.integration, pytest.mark.both_modes]

SAMPLES = CHIRPSTACK_SAMPLES


def _message(topic: str, payload: bytes) -> InboundMessage:
    return InboundMessage(topic, payload, mid=1, received_at=time.time(), session=0, duplicate=False)


def _samples() -> list[InboundMessage]:
    events = json.loads(SAMPLES.read_text())["events"]
    return [_message(e["topic"], e["wire"].encode()) for e in events]


@pytest.fixture(scope="module")
def codecs() -> CodecLibrary:
    return CodecLibrary.discover()


@pytest.fixture
def processor(db_url: str, codecs: CodecLibrary) -> Iterator[BatchProcessor]:
    p = BatchProcessor(db_url, codecs)
    yield p
    p.close()


def _one(conn: psycopg.Connection[Any], query: str, *args: Any) -> Any:
    row = conn.execute(query, args).fetchone()
    assert row is not None
    return row[0]


def test_recorded_samples_ingest(processor: BatchProcessor, db_url: str) -> None:
    outcome = processor.process(_samples())
    assert outcome is not None
    result, times = outcome
    assert result.uplinks == 3 and result.duplicates == 0 and len(times) == 3
    with psycopg.connect(db_url) as conn:
        devices = conn.execute("SELECT dev_eui, status, name FROM devices ORDER BY dev_eui").fetchall()
        assert devices == [
            ("0101010101010101", "unregistered", "Test device"),
            ("70b3d57ed0054a1f", "unregistered", "gh-north-th-01"),
            ("a84041000181c2d3", "unregistered", "meter-0087"),
        ]
        up = conn.execute(
            """SELECT u.f_cnt, u.f_port, u.dr, u.rssi, u.snr, u.gateway_count, u.decode_status, u.codec_id,
                      u.payload, u.time
               FROM uplinks u JOIN devices d ON d.id = u.device_id WHERE d.dev_eui = '70b3d57ed0054a1f'"""
        ).fetchone()
        assert up is not None
        assert up[:8] == (1532, 2, 5, -87, 7.25, 1, "ok", "chirpstack")
        assert bytes(up[8]).hex() == "00e13d0c1c00"
        assert up[9] == datetime(2026, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)
        values = dict(conn.execute(
            """SELECT m.name, v.value FROM measurements v JOIN metrics m ON m.id = v.metric_id
               JOIN devices d ON d.id = v.device_id WHERE d.dev_eui = '70b3d57ed0054a1f'"""
        ).fetchall())
        assert values == {"temperature": 22.5, "humidity": 61.0, "battery_voltage": 3.1}
        # Two gateways heard the US915 frame; the best one is kept on the row.
        best = conn.execute(
            """SELECT u.rssi, u.gateway_count, g.gateway_eui FROM uplinks u JOIN gateways g ON g.id = u.gateway_id
               WHERE u.f_cnt = 87"""
        ).fetchone()
        assert best == (-112, 2, "b827ebfffe61ca01")
        assert _one(conn, "SELECT count(*) FROM gateways") == 3
        # No codec for the other two devices: the rows are kept and flagged, and dead letters say why.
        assert _one(conn, "SELECT count(*) FROM uplinks WHERE decode_status = 'no_codec'") == 2
        letters = list_dead_letters(conn)
        assert sorted(d.dev_eui or "" for d in letters) == ["0101010101010101", "a84041000181c2d3"]
        assert all(d.stage == "decode" and "no codec" in d.reason for d in letters)


def test_redelivery_adds_nothing(processor: BatchProcessor, db_url: str) -> None:
    assert processor.process(_samples()) is not None
    with psycopg.connect(db_url) as conn:
        before = [_one(conn, f"SELECT count(*) FROM {t}")
                  for t in ("uplinks", "measurements", "dead_letters", "rollup_device_hourly")]
        rollup_before = conn.execute("SELECT * FROM rollup_device_hourly ORDER BY 1, 2, 3").fetchall()
    again = processor.process(_samples() + _samples())
    assert again is not None
    assert again[0].uplinks == 0 and again[0].duplicates == 6  # every delivery counted
    with psycopg.connect(db_url) as conn:
        after = [_one(conn, f"SELECT count(*) FROM {t}")
                 for t in ("uplinks", "measurements", "dead_letters", "rollup_device_hourly")]
        assert after == before
        assert conn.execute("SELECT * FROM rollup_device_hourly ORDER BY 1, 2, 3").fetchall() == rollup_before


def test_codec_fix_and_replay_fills_in_measurements(processor: BatchProcessor, db_url: str) -> None:
    assert processor.process(_samples()) is not None
    with psycopg.connect(db_url) as conn:
        # The operator says which codec the water-meter profile uses (its bytes are Cayenne LPP).
        conn.execute("INSERT INTO device_profile_codecs VALUES ('0a9b8c7d-6e5f-4a3b-9c2d-1e0f9a8b7c6d', "
                     "'cayenne-lpp')")
        conn.execute("UPDATE devices SET codec_id = 'cayenne-lpp' WHERE dev_eui = 'a84041000181c2d3'")
        conn.commit()
        letters = list_dead_letters(conn)
    processor.devices.invalidate()
    outcome = replay(processor, letters)
    assert (outcome.attempted, outcome.resolved, outcome.still_failing) == (2, 1, 1)
    with psycopg.connect(db_url) as conn:
        values = dict(conn.execute(
            """SELECT m.name, v.value FROM measurements v JOIN metrics m ON m.id = v.metric_id
               JOIN devices d ON d.id = v.device_id WHERE d.dev_eui = 'a84041000181c2d3'"""
        ).fetchall())
        assert values == {"temperature": 28.2, "humidity": 63.5}
        assert _one(conn, "SELECT decode_status FROM uplinks WHERE f_cnt = 87") == "ok"
        assert _one(conn, "SELECT count(*) FROM uplinks") == 3
        still = list_dead_letters(conn)
        assert [d.dev_eui for d in still] == ["0101010101010101"] and still[0].replay_count == 1
    # Replaying the resolved one again changes nothing.
    again = replay(processor, still)
    assert again.resolved == 0 and again.still_failing == 1


def _uplink(dev_eui: str, f_cnt: int, data: bytes, *, codec: str = "cayenne-lpp", when: datetime | None = None,
            obj: dict[str, Any] | None = None) -> InboundMessage:
    event = integration.UplinkEvent(
        deduplication_id=str(uuid.uuid4()), f_cnt=f_cnt, f_port=2, dr=5, data=data,
        device_info=integration.DeviceInfo(dev_eui=dev_eui, device_name=f"dev-{dev_eui[-4:]}",
                                           tags={"codec": codec, "kind": "temp_humidity"}),
    )
    event.time.FromDatetime(when or datetime.now(UTC))
    if obj is not None:
        event.object.update(obj)
    return _message(f"application/app/device/{dev_eui}/event/up", event.SerializeToString())


def test_out_of_range_values_are_flagged_and_kept_out_of_rollups(processor: BatchProcessor, db_url: str) -> None:
    when = datetime(2026, 5, 1, 10, 15, tzinfo=UTC)
    messages = [
        # humidity 0xC8 * 0.5 = 100 %: fine; temperature 0x03E8 = 100.0 °C: above the metric's 85 °C
        _uplink("00000000000000a1", 1, bytes.fromhex("016703e80268c8"), when=when),
        _uplink("00000000000000a1", 2, bytes.fromhex("016700fa0268a0"), when=when.replace(minute=45)),
    ]
    assert processor.process(messages) is not None
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            """SELECT v.value, v.quality FROM measurements v JOIN metrics m ON m.id = v.metric_id
               WHERE m.name = 'temperature' ORDER BY v.time"""
        ).fetchall()
        assert rows == [(100.0, 1), (25.0, 0)]
        rollup = conn.execute(
            """SELECT r.n, r.total, r.minimum, r.maximum FROM rollup_device_hourly r
               JOIN metrics m ON m.id = r.metric_id WHERE m.name = 'temperature'"""
        ).fetchall()
        assert rollup == [(1, 25.0, 25.0, 25.0)]


def test_rollups_equal_a_fresh_aggregate(processor: BatchProcessor, db_url: str) -> None:
    """Whatever the batches looked like, the plain-mode rollup tables equal aggregating measurements."""
    base = datetime(2026, 5, 2, 0, 0, tzinfo=UTC)
    messages = []
    for i in range(300):
        temp = 200 + (i * 37) % 150  # 20.0 .. 34.9 °C
        payload = bytes.fromhex("0167") + temp.to_bytes(2, "big") + bytes.fromhex("0268") + bytes([100 + i % 60])
        when = base.replace(hour=(i * 7) % 24, minute=i % 60)
        messages.append(_uplink(f"00000000000000{i % 5:02x}", i, payload, when=when))
    for chunk in (messages[:50], messages[50:170], messages[170:]):
        assert processor.process(chunk) is not None
    with psycopg.connect(db_url) as conn:
        fresh = conn.execute(
            """SELECT date_trunc('hour', time), device_id, metric_id, count(*), sum(value), min(value), max(value)
               FROM measurements WHERE quality = 0 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""
        ).fetchall()
        kept = conn.execute(
            "SELECT bucket, device_id, metric_id, n, total, minimum, maximum FROM rollup_device_hourly "
            "ORDER BY 1, 2, 3"
        ).fetchall()
        assert len(fresh) > 50
        assert [r[:4] for r in kept] == [r[:4] for r in fresh]
        assert all(abs(a[4] - b[4]) < 1e-9 and a[5:] == b[5:] for a, b in zip(kept, fresh, strict=True))
        zone_fresh = conn.execute(
            """SELECT date_trunc('hour', time), zone_id, metric_id, count(*), min(value), max(value)
               FROM measurements WHERE quality = 0 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""
        ).fetchall()
        zone_kept = conn.execute(
            "SELECT bucket, zone_id, metric_id, n, minimum, maximum FROM rollup_zone_hourly ORDER BY 1, 2, 3"
        ).fetchall()
        assert zone_kept == zone_fresh


def test_garbage_becomes_dead_letters_and_good_messages_still_land(processor: BatchProcessor, db_url: str) -> None:
    good = _uplink("00000000000000b1", 1, bytes.fromhex("016700fa"))
    short = _uplink("00000000000000b1", 2, bytes.fromhex("0167"))  # truncated Cayenne frame
    bad = [
        _message("application/app/device/00000000000000b1/event/up", b"{not json"),
        _message("application/app/device/00000000000000b1/event/up", b"\x0a\xff\xff"),
        _message("something/else", b"{}"),
        _message("application/app/device/00000000000000b1/event/up",
                 b'{"deduplicationId":"3ac7e3c4-4401-4b8d-9386-a5c902f9202d"}'),
    ]
    outcome = processor.process([good, short, *bad])
    assert outcome is not None
    assert outcome[0].uplinks == 2 and outcome[0].dead_letters == 5
    with psycopg.connect(db_url) as conn:
        stages = conn.execute("SELECT stage, count(*) FROM dead_letters GROUP BY 1 ORDER BY 1").fetchall()
        assert stages == [("decode", 1), ("parse", 4)]
        raw = {bytes(r[0]) for r in conn.execute("SELECT payload FROM dead_letters")}
        assert b"{not json" in raw and b"\x0a\xff\xff" in raw
        assert _one(conn, "SELECT decode_status FROM uplinks WHERE f_cnt = 2") == "error"


def test_status_and_other_events(processor: BatchProcessor, db_url: str) -> None:
    info = integration.DeviceInfo(dev_eui="00000000000000c1", device_name="c1")
    dedup = str(uuid.uuid4())
    status = integration.StatusEvent(deduplication_id=dedup, device_info=info, margin=12, battery_level=55.5)
    join = integration.JoinEvent(deduplication_id=str(uuid.uuid4()), device_info=info, dev_addr="01020304")
    log = integration.LogEvent(device_info=info, level=integration.LogLevel.ERROR,
                               code=integration.LogCode.UPLINK_CODEC, description="codec failed")
    messages = []
    for kind, event in (("status", status), ("join", join), ("log", log)):
        event.time.FromDatetime(datetime(2026, 5, 3, 8, 0, tzinfo=UTC))
        messages.append(_message(f"application/app/device/00000000000000c1/event/{kind}",
                                 json_format.MessageToJson(event).encode()))
    outcome = processor.process(messages + messages)
    assert outcome is not None and outcome[0].device_events == 3
    with psycopg.connect(db_url) as conn:
        events = conn.execute(
            "SELECT event_type, battery_level, margin, level, code FROM device_events ORDER BY event_type"
        ).fetchall()
        assert events == [("join", None, None, None, None), ("log", None, None, "ERROR", "UPLINK_CODEC"),
                          ("status", 55.5, 12, None, None)]
        values = dict(conn.execute(
            "SELECT m.name, v.value FROM measurements v JOIN metrics m ON m.id = v.metric_id").fetchall())
        assert values == {"battery": 55.5, "link_margin": 12.0}
