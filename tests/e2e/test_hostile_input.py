"""Issue 10, part 2: each hostile event shape found, through the worker's batch path on a real PostgreSQL.

Every test puts the hostile message between valid neighbours and asserts the three things the issue asks for:
the batch path does not raise (the worker would have exited), the hostile message is stored (cleaned, flagged)
or is a dead letter with its stage and reason, and the neighbours are stored. Each one failed at commit
47dd00b; ``test_worker_survives_every_found_shape`` does the same through a real ``ioc ingest`` process.

One module of ~420 lines: one test per hostile shape of the issue, read as one list.
"""

from __future__ import annotations

import base64
import json
import signal
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from gateways.local_mosquitto import LocalMosquitto
from gateways.mqtt import InboundMessage
from ingest.processor import BatchProcessor
from tests.e2e.test_feed import RunningWorker, Subscriber, _records, cayenne, registry, start_worker
from tests.e2e.test_feed import _publish as _feed_publish
from tests.e2e.test_worker import WorkerProcess, _publish, worker_factory
from tests.events import uplink
from tests.hostile_events import encode, inbound, sample, topic_for
from tests.integration.test_ingest_batches import codecs, processor
from tests.waiting import wait_for

pytestmark = [pytest.mark.e2e]

# Fixtures taken from test_worker.py, test_feed.py and test_ingest_batches.py.
__all__ = ["codecs", "processor", "registry", "start_worker", "worker_factory"]

GOOD_EUI = "70b3d57ed0054a1f"  # sample 0's device, used by the neighbours




def _neighbours(n: int = 2) -> list[InboundMessage]:
    out = []
    for _ in range(n):
        payload = sample(0)
        body = encode(payload)
        assert body is not None
        out.append(inbound(topic_for(payload), body))
    return out


def _hostile(payload: dict[str, Any], encoding: str = "json", *, dev_eui: str | None = None) -> InboundMessage:
    body = encode(payload, encoding)
    assert body is not None, f"{encoding} cannot carry this payload"
    return inbound(topic_for(payload, dev_eui), body)


def _run(processor: BatchProcessor, hostile: InboundMessage) -> None:
    """The hostile message between neighbours, through prepare and commit as the worker runs them."""
    before, after = _neighbours(), _neighbours()
    outcome = processor.process([*before, hostile, *after])
    assert outcome is not None


def _rows(db_url: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(query, args).fetchall()


def _dead(db_url: str) -> list[tuple[str, str, bytes]]:
    return [(r[0], r[1], bytes(r[2])) for r in _rows(db_url, "SELECT stage, reason, payload FROM dead_letters")]


def _assert_neighbours_stored(db_url: str, n: int = 4) -> None:
    count = _rows(db_url, "SELECT count(*) FROM uplinks u JOIN devices d ON d.id = u.device_id "
                          "WHERE d.dev_eui = %s", GOOD_EUI)
    assert count == [(n,)]


def _stored(db_url: str, dedup: str) -> list[tuple[Any, ...]]:
    return _rows(db_url, "SELECT f_port, f_cnt, dr, rssi, snr, length(payload), time FROM uplinks "
                         "WHERE deduplication_id = %s", uuid.UUID(dedup))


# --- the eight shapes that crashed the worker -----------------------------------------------------------


def test_time_that_overflows_converting_to_utc_is_a_dead_letter(processor: BatchProcessor, db_url: str) -> None:
    payload = sample(0, dev_eui="0101010101010102")
    payload["time"] = "0001-01-01T00:00:00+14:00"
    _run(processor, _hostile(payload))
    [(stage, reason, _)] = _dead(db_url)
    assert stage == "parse" and "UTC" in reason
    _assert_neighbours_stored(db_url)


def test_object_nested_5000_deep_is_a_dead_letter(processor: BatchProcessor, db_url: str) -> None:
    payload = sample(0, dev_eui="0101010101010102")
    deep: dict[str, Any] = {"temperature": 1.0}
    for _ in range(5000):
        deep = {"x": deep}
    payload["object"] = deep
    body = json.dumps(payload["object"].__class__()).encode()  # json.dumps itself recurses: build the bytes
    text = json.dumps({**payload, "object": None}).replace('"object": null', '"object": ' + '{"x": ' * 5000 + "1"
                                                           + "}" * 5000)
    assert body == b"{}"
    _run(processor, inbound(topic_for(payload), text.encode()))
    [(stage, reason, _)] = _dead(db_url)
    assert stage == "parse" and "deep" in reason
    _assert_neighbours_stored(db_url)


def test_401_digit_integer_in_object_is_flagged_not_fatal(processor: BatchProcessor, db_url: str) -> None:
    payload = sample(0, dev_eui="0101010101010102")
    payload["object"] = {"temperature": 10**400, "humidity": 55.0}
    _run(processor, _hostile(payload))
    assert _dead(db_url) == []
    values = dict(_rows(db_url, "SELECT m.name, v.quality FROM measurements v JOIN metrics m ON m.id = v.metric_id "
                                "JOIN devices d ON d.id = v.device_id WHERE d.dev_eui = '0101010101010102'"))
    assert values == {"temperature": 2, "humidity": 0}  # 2: not finite, kept and flagged
    _assert_neighbours_stored(db_url)


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
@pytest.mark.parametrize("dev_eui", ["0x0000000000001f", "\uff10" * 14 + "\uff11\uff12", " 00000000000001f",
                                     "0000_0000_000001"], ids=["0x", "fullwidth", "space", "underscore"])
def test_deveui_that_int_accepts_but_the_database_refuses_is_a_dead_letter(
    processor: BatchProcessor, db_url: str, dev_eui: str, encoding: str
) -> None:
    payload = sample(0, dev_eui=dev_eui)
    _run(processor, _hostile(payload, encoding))
    [(stage, reason, _)] = _dead(db_url)
    assert stage == "parse" and "DevEUI" in reason
    _assert_neighbours_stored(db_url)


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
@pytest.mark.parametrize("where", ["deviceName", "tag value", "tag key", "applicationName"])
def test_nul_and_control_characters_in_text_are_removed(
    processor: BatchProcessor, db_url: str, where: str, encoding: str
) -> None:
    payload = sample(0, dev_eui="0101010101010102")
    info = payload["deviceInfo"]
    dirty = "gh\x00-north\x07\x1b[1m\x7f\x85-01"
    if where == "deviceName":
        info["deviceName"] = dirty
    elif where == "tag value":
        info["tags"] = {"site": dirty}
    elif where == "tag key":
        info["tags"] = {dirty: "x"}
    else:
        info["applicationName"] = dirty
    _run(processor, _hostile(payload, encoding))
    assert _dead(db_url) == []
    [(name, tags, app)] = _rows(db_url, "SELECT name, tags, application_name FROM devices "
                                        "WHERE dev_eui = '0101010101010102'")
    stored = {"deviceName": name, "tag value": tags.get("site"), "tag key": next(iter(tags), None),
              "applicationName": app}[where]
    assert stored == "gh-north[1m-01"
    _assert_neighbours_stored(db_url)


def test_lone_surrogate_escape_is_a_dead_letter(processor: BatchProcessor, db_url: str) -> None:
    """Not one of the findings (msgspec refuses it), kept so that it stays so: UTF-8 cannot carry it."""
    payload = sample(0, dev_eui="0101010101010102")
    payload["deviceInfo"]["deviceName"] = "meter\ud800-1"
    body = json.dumps(payload).encode()  # ensure_ascii: the surrogate travels as the escape \ud800
    _run(processor, inbound(topic_for(payload), body))
    [(stage, reason, _)] = _dead(db_url)
    assert stage == "parse" and "surrogate" in reason
    _assert_neighbours_stored(db_url)


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_nul_in_gateway_id_is_a_dead_letter(processor: BatchProcessor, db_url: str, encoding: str) -> None:
    payload = sample(0, dev_eui="0101010101010102")
    payload["rxInfo"][0]["gatewayId"] = "0016c001f153a1\x004c"[:16]
    _run(processor, _hostile(payload, encoding))
    [(stage, reason, _)] = _dead(db_url)
    assert stage == "parse" and "gateway id" in reason
    _assert_neighbours_stored(db_url)


# --- values that were stored wrapped, and sizes that were stored whole -------------------------------


@pytest.mark.parametrize(
    ("field", "value", "encodings"),
    [
        ("rssi", 2**40, ["json"]),
        ("rssi", 40_000, ["json", "protobuf"]),
        ("snr", 1e6, ["json", "protobuf"]),
        ("fPort", 70_000, ["json", "protobuf"]),
        ("fPort", -5, ["json"]),
        ("fCnt", 2**32, ["json"]),
        ("dr", 16, ["json", "protobuf"]),
        ("dr", 70_000, ["json", "protobuf"]),
    ],
    ids=["rssi-2^40", "rssi-40000", "snr-1e6", "fport-70000", "fport-minus5", "fcnt-2^32", "dr-16", "dr-70000"],
)
def test_out_of_range_integers_are_refused_never_wrapped(
    processor: BatchProcessor, db_url: str, field: str, value: float, encodings: list[str]
) -> None:
    for encoding in encodings:
        payload = sample(0, dev_eui="0101010101010102")
        if field in ("rssi", "snr"):
            payload["rxInfo"][0][field] = value
        else:
            payload[field] = value
        _run(processor, _hostile(payload, encoding))
        assert _stored(db_url, payload["deduplicationId"]) == [], f"{field}={value} stored ({encoding})"
    dead = _dead(db_url)
    assert len(dead) == len(encodings) and all(stage == "parse" for stage, _, _ in dead)
    assert all(field.lower() in reason.lower() for _, reason, _ in dead)
    _assert_neighbours_stored(db_url, 4 * len(encodings))


def test_oversized_event_is_a_dead_letter_that_keeps_its_first_bytes(processor: BatchProcessor, db_url: str) -> None:
    payload = sample(0, dev_eui="0101010101010102")
    payload["data"] = base64.b64encode(bytes(3 * 1024 * 1024)).decode()  # a 4 MiB event
    hostile = _hostile(payload)
    _run(processor, hostile)
    assert _stored(db_url, payload["deduplicationId"]) == []
    [(stage, reason, kept)] = _dead(db_url)
    assert stage == "parse" and "larger than" in reason
    assert kept == hostile.payload[:4096]
    _assert_neighbours_stored(db_url)


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_frm_payload_longer_than_lorawan_allows_is_a_dead_letter(
    processor: BatchProcessor, db_url: str, encoding: str
) -> None:
    payload = sample(0, dev_eui="0101010101010102")
    payload["data"] = base64.b64encode(bytes(range(256)) + bytes(44)).decode()  # 300 bytes
    _run(processor, _hostile(payload, encoding))
    assert _stored(db_url, payload["deduplicationId"]) == []
    [(stage, reason, _)] = _dead(db_url)
    assert stage == "parse" and "242" in reason
    _assert_neighbours_stored(db_url)


# --- event times outside the trusted window ----------------------------------------------------------


@pytest.mark.parametrize("claimed", ["2099-01-01T00:00:00+00:00", "2006-05-01T00:00:00+00:00"],
                         ids=["far-future", "gps-rollover-past"])
def test_untrusted_event_time_is_stored_at_receive_time_with_the_claim_beside_it(
    processor: BatchProcessor, db_url: str, claimed: str
) -> None:
    payload = sample(0, dev_eui="0101010101010102")
    payload["time"] = claimed
    hostile = _hostile(payload)
    _run(processor, hostile)
    assert _dead(db_url) == []
    # Last-seen (what health, ordering and the feed read) is the receive time, not the claimed time.
    received = datetime.fromtimestamp(hostile.received_at, UTC)
    [(when,)] = _rows(db_url, "SELECT time FROM uplinks WHERE deduplication_id = %s",
                      uuid.UUID(payload["deduplicationId"]))
    assert abs(when - received) < timedelta(seconds=1)
    [(last_seen,)] = _rows(db_url, "SELECT max(u.time) FROM uplinks u JOIN devices d ON d.id = u.device_id "
                                   "WHERE d.dev_eui = '0101010101010102'")
    assert last_seen == when
    [(event_time,)] = _rows(db_url, "SELECT event_time FROM uplinks WHERE deduplication_id = %s",
                            uuid.UUID(payload["deduplicationId"]))
    assert event_time == datetime.fromisoformat(claimed)
    measured = _rows(db_url, "SELECT DISTINCT v.time FROM measurements v JOIN devices d ON d.id = v.device_id "
                             "WHERE d.dev_eui = '0101010101010102'")
    assert measured == [(when,)]
    # A redelivery (a later receive time) is still a duplicate: the row's time is pinned to the stored one.
    count = "SELECT count(*) FROM measurements v JOIN devices d ON d.id = v.device_id WHERE d.dev_eui = %s"
    before = _rows(db_url, count, "0101010101010102")
    again = inbound(hostile.topic, hostile.payload)
    outcome = processor.process([again])
    assert outcome is not None and outcome[0].uplinks == 0 and outcome[0].duplicates == 1
    assert _rows(db_url, count, "0101010101010102") == before != [(0,)]
    _assert_neighbours_stored(db_url)


# --- database refusals the edge does not know: narrowed to the one message ---------------------------


@pytest.mark.parametrize("table", ["devices", "gateways"])
def test_database_refusal_in_enrolment_is_that_message_s_dead_letter(
    processor: BatchProcessor, db_url: str, table: str
) -> None:
    """A CHECK the edge knows nothing of stands in for any value the database may refuse (SQLSTATE 23514)."""
    with psycopg.connect(db_url) as conn:
        if table == "devices":
            conn.execute("ALTER TABLE devices ADD CONSTRAINT test_refuses CHECK (name <> 'refused-by-db')")
        else:
            conn.execute("ALTER TABLE gateways ADD CONSTRAINT test_refuses CHECK (gateway_eui <> 'ffffffffffffffff')")
    payload = sample(0, dev_eui="0101010101010102")
    if table == "devices":
        payload["deviceInfo"]["deviceName"] = "refused-by-db"
    else:
        payload["rxInfo"][0]["gatewayId"] = "ffffffffffffffff"
    others = [sample(1), sample(2)]
    messages = [*_neighbours(), _hostile(payload), *[_hostile(p) for p in others], *_neighbours()]
    outcome = processor.process(messages)
    assert outcome is not None
    # Sample 1 has no codec: its own dead letter (stage decode) beside the refused one.
    [(stage, reason, _)] = [d for d in _dead(db_url) if d[0] != "decode"]
    assert stage == "device" and "23514" in reason
    assert _stored(db_url, payload["deduplicationId"]) == []
    for p in others:
        assert len(_stored(db_url, p["deduplicationId"])) == 1
    _assert_neighbours_stored(db_url)


def test_database_refusal_of_a_row_is_that_message_s_dead_letter(processor: BatchProcessor, db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("ALTER TABLE uplinks ADD CONSTRAINT test_refuses CHECK (f_cnt <> 666)")
    payload = sample(0, dev_eui="0101010101010102")
    payload["fCnt"] = 666
    _run(processor, _hostile(payload))
    [(stage, reason, _)] = _dead(db_url)
    assert stage == "store" and "23514" in reason
    _assert_neighbours_stored(db_url)


# --- the same through a real worker process ----------------------------------------------------------


def _found_shapes() -> list[tuple[str, bytes]]:
    """The eight shapes of the issue (plus the size and range findings), as (topic, payload)."""
    out: list[tuple[str, bytes]] = []

    def add(mutate: Callable[[dict[str, Any]], None], encoding: str = "json", eui: str = "0101010101010102") -> None:
        payload = sample(0, dev_eui=eui)
        mutate(payload)
        body = encode(payload, encoding)
        assert body is not None
        out.append((topic_for(payload), body))

    add(lambda p: p.update(time="0001-01-01T00:00:00+14:00"))
    base = sample(0, dev_eui="0101010101010103")
    deep = json.dumps({**base, "object": None}).replace('"object": null', '"object": ' + '{"x": ' * 5000 + "1"
                                                        + "}" * 5000)
    out.append((topic_for(base), deep.encode()))
    add(lambda p: p.update(object={"temperature": 10**400}), eui="0101010101010104")
    add(lambda p: None, eui="0x0000000000001f")
    add(lambda p: None, "protobuf", eui="\uff10" * 14 + "\uff11\uff12")
    add(lambda p: p["deviceInfo"].update(deviceName="nul\x00name"), eui="0101010101010105")
    add(lambda p: p["deviceInfo"].update(tags={"site": "nul\x00tag"}), "protobuf", eui="0101010101010106")
    add(lambda p: p["rxInfo"][0].update(gatewayId="0016c001f153\x00a14"))
    add(lambda p: p["rxInfo"][0].update(rssi=2**40))
    add(lambda p: p.update(fPort=70_000), "protobuf")
    add(lambda p: p.update(time="2099-01-01T00:00:00+00:00"), eui="0101010101010107")
    add(lambda p: p.update(data=base64.b64encode(bytes(2 * 1024 * 1024)).decode()))
    return out


def test_worker_survives_every_found_shape(db_url: str, broker: LocalMosquitto,
                                           worker_factory: Callable[..., WorkerProcess]) -> None:
    worker = worker_factory(db_url, broker.url)
    worker.start()
    hostile = _found_shapes()
    good = [(topic_for(p), encode(p) or b"") for p in (sample(0) for _ in range(20))]
    messages = [m for pair in zip(good[: len(hostile)], hostile, strict=True) for m in pair] + good[len(hostile):]
    _publish(broker.url, messages)
    # Stored: the 20 neighbours, the big integer (flagged reading), the two NUL names (cleaned), 2099 (flagged).
    # Dead letters: the other eight.
    wait_for(lambda: _count_rows(db_url) == (24, 8), timeout_s=60, what="24 uplinks and 8 dead letters")
    time.sleep(1.0)
    assert worker.proc is not None and worker.proc.poll() is None, worker.log()[-3000:]
    kept = _rows(db_url, "SELECT length(payload) FROM dead_letters WHERE reason LIKE '%%larger than%%'")
    assert kept == [(4096,)]
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0


def _count_rows(db_url: str) -> tuple[int, int]:
    try:
        [(uplinks, dead)] = _rows(db_url, "SELECT (SELECT count(*) FROM uplinks), (SELECT count(*) FROM dead_letters)")
    except psycopg.OperationalError:
        return (-1, -1)
    return int(uplinks), int(dead)



# --- the open feed: a far-future reading must not pin the retained one ---------------------------------


def test_far_future_reading_does_not_pin_the_retained_feed_reading(
    registry: str, broker: LocalMosquitto, start_worker: Callable[..., RunningWorker]
) -> None:
    start_worker(registry)
    eui = "a000000000000001"
    _feed_publish(broker, [uplink(eui, 1, cayenne(35.0, 50.0), when=datetime(2099, 1, 1, tzinfo=UTC))])
    wait_for(lambda: _count_rows(registry)[0] == 1, timeout_s=30, what="the 2099 uplink")
    time.sleep(0.5)
    _feed_publish(broker, [uplink(eui, 2, cayenne(21.0, 60.0))])
    wait_for(lambda: _count_rows(registry)[0] == 2, timeout_s=30, what="the uplink after it")
    late = Subscriber(broker)
    try:
        wait_for(lambda: any(eui in t and late.topics()[t].payload for t in late.topics("/temperature_humidity/")),
                 timeout_s=10, what="the retained reading")
        time.sleep(0.5)
        [(topic, message)] = late.topics("/temperature_humidity/").items()
        assert topic.endswith(eui)
        measured, _ = _records(message.payload)
        assert message.retain and measured["temperature"]["v"] == 21.0
        # And the reading that claimed 2099 is dated when it arrived.
        [(newest,)] = _rows(registry, "SELECT max(time) FROM uplinks")
        assert newest <= datetime.now(UTC) + timedelta(seconds=5)
    finally:
        late.close()


def test_a_database_error_that_is_not_the_message_s_stops_the_worker_and_blames_no_message(
    processor: BatchProcessor, db_url: str
) -> None:
    """SQLSTATE 42P01 (a table gone: a broken schema) is fatal: it must not turn the batch into dead letters."""
    from gateways.database import DatabaseFailed  # here: the module stays importable at 47dd00b, to compare

    with psycopg.connect(db_url) as conn:
        conn.execute("ALTER TABLE measurements RENAME TO measurements_elsewhere")
    with pytest.raises(DatabaseFailed, match="42P01"):
        processor.process(_neighbours(4))
    assert _dead(db_url) == []
