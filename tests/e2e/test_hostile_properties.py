"""Property-based: any field of a real ChirpStack event replaced by an extreme value never stops the ingest.

Hypothesis takes the shared sample uplinks in both encodings, replaces one to three fields anywhere in them
(type changes, integers beyond 64 bits, NaN and infinities, deep nesting, huge strings, control characters,
non-ASCII digits, missing fields) and sends the result between valid neighbours through the worker's batch
path on a real PostgreSQL. Each example must end with the batch path returning (the worker would otherwise
exit), the hostile message stored or a dead letter, and the neighbours stored.
"""

from __future__ import annotations

import copy
import os
import random
import signal
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateways.local_mosquitto import LocalMosquitto
from gateways.mqtt import InboundMessage
from ingest.codecs.library import CodecLibrary
from ingest.dead_letters import fingerprint
from ingest.processor import BatchProcessor
from tests.e2e.test_worker import WorkerProcess, _publish, worker_factory
from tests.fix_postgres import PgServer, new_database
from tests.hostile_events import encode, inbound, sample, samples, topic_for
from tests.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

__all__ = ["worker_factory"]

Path_ = tuple[str | int, ...]

# Extreme values by family; every family is also drawn on its own by Hypothesis below.
HUGE_INTS = [2**31, -(2**31) - 1, 2**32, 2**40, 2**63, 2**64, -(2**64), 10**400, -(10**400), -1, 0, 70_000]
ODD_FLOATS = [float("nan"), float("inf"), float("-inf"), 1e308, -1e308, 5e-324, 3.5e38, -0.0]
TYPE_CHANGES: list[Any] = [None, True, False, [], {}, "", "text", [1, 2], {"a": {"b": 1}}, 1.5, "1532"]
CONTROL = ["\x00", "a\x00b", "\x07\x1b[31m", "\x7f", "\x85", "\u2028", "\ufeff", "\t\n\r"]
NON_ASCII_DIGITS = ["\uff10" * 14 + "\uff11\uff12", "\u0660" * 16, "\u0966\u0967" * 8, "0x0000000000001f",
                    " 00000000000001f", "0000_0000_000001", "ABCDEF0123456789", "abcdef012345678g"]


def _deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"x": value}
    return value


def _paths(value: Any, prefix: Path_ = ()) -> list[Path_]:
    out: list[Path_] = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, inner in value.items():
            out += _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            out += _paths(inner, (*prefix, index))
    return out


ALL_PATHS = sorted({p for s in samples() for p in _paths(s["payload"])}, key=str)


def _apply(payload: dict[str, Any], path: Path_, value: Any, delete: bool) -> None:
    target: Any = payload
    for step in path[:-1]:
        inside = (step in target) if isinstance(target, dict) else (
            isinstance(target, list) and isinstance(step, int) and step < len(target))
        if not inside:
            return  # an earlier mutation replaced the container: nothing left to change here
        target = target[step]
    last = path[-1]
    if isinstance(target, dict):
        if delete:
            target.pop(last, None)
        else:
            target[last] = value
    elif isinstance(target, list) and isinstance(last, int) and last < len(target):
        target[last] = value


extreme = st.one_of(
    st.sampled_from(HUGE_INTS),
    st.integers(),
    st.sampled_from(ODD_FLOATS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(TYPE_CHANGES),
    st.sampled_from(CONTROL),
    st.text(max_size=40),
    st.sampled_from(NON_ASCII_DIGITS),
    st.integers(min_value=1, max_value=250).map(_deep),
    st.integers(min_value=1_000, max_value=300_000).map(lambda n: "x" * n),
    st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2099-01-01T00:00:00Z",
                     "1970-01-01T00:00:00Z", "not a time"]),
)
mutation = st.tuples(st.sampled_from(ALL_PATHS), extreme, st.sampled_from([False] * 9 + [True]))  # 1 in 10 deletes


def _fate(db_url: str, message: InboundMessage, payload: dict[str, Any]) -> str | None:
    """'stored', 'dead' or None (lost)."""
    with psycopg.connect(db_url) as conn:
        dedup = payload.get("deduplicationId")
        if isinstance(dedup, str):
            try:
                key = uuid.UUID(dedup)
            except ValueError:
                key = None
            if key is not None:
                row = conn.execute("SELECT 1 FROM uplinks WHERE deduplication_id = %s", (key,)).fetchone()
                if row is not None:
                    return "stored"
        # Either the message's own fingerprint, or (oversized) one that names its size.
        row = conn.execute("SELECT 1 FROM dead_letters WHERE fingerprint = %s OR (topic = %s AND reason LIKE %s)",
                           (fingerprint(message.topic, message.payload), message.topic, "%larger than%")).fetchone()
        return "dead" if row is not None else None


@pytest.fixture(scope="module")
def shared_db(pg_server: PgServer, template_db: str) -> Iterator[str]:
    """One database for all examples: Hypothesis runs them inside one test, so per-test databases cannot help."""
    with new_database(pg_server, "ioc_props", template_db) as url:
        yield url


@pytest.fixture(scope="module")
def shared_processor(shared_db: str) -> Iterator[BatchProcessor]:
    p = BatchProcessor(shared_db, CodecLibrary.discover())
    yield p
    p.close()


def _neighbour() -> tuple[InboundMessage, dict[str, Any]]:
    payload = sample(0)
    body = encode(payload)
    assert body is not None
    return inbound(topic_for(payload), body), payload


def _topic_level(text: str) -> bool:
    """A broker refuses (and drops the connection of) a PUBLISH whose topic has these; ChirpStack never sends one."""
    return len(text) < 1000 and not any(c in text for c in "\x00+#/") and not any(
        "\ud800" <= c <= "\udfff" for c in text)


def _hostile_message(index: int, mutations: list[tuple[Path_, Any, bool]], encoding: str, *,
                     broker_safe: bool = False) -> tuple[InboundMessage, dict[str, Any]] | None:
    payload = sample(index)
    for path, value, delete in mutations:
        _apply(payload, path, copy.deepcopy(value), delete)
    try:
        body = encode(payload, encoding)
    except (ValueError, RecursionError):
        return None  # not even JSON can carry it
    if body is None:
        return None  # protobuf cannot carry the value: nothing to send
    info = payload.get("deviceInfo")
    eui = info.get("devEui") if isinstance(info, dict) else None
    if not isinstance(eui, str) or (broker_safe and not _topic_level(eui)):
        eui = None  # the sample's own DevEUI in the topic: then it disagrees with the payload's
    topic = topic_for(sample(index), eui)
    return inbound(topic, body), payload


@settings(max_examples=int(os.environ.get("IOC_HOSTILE_EXAMPLES", "300")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(index=st.integers(0, 2), mutations=st.lists(mutation, min_size=1, max_size=3),
       encoding=st.sampled_from(["json", "protobuf"]))
def test_any_mutated_field_ends_stored_or_dead_and_neighbours_are_stored(
    shared_processor: BatchProcessor, shared_db: str, index: int, mutations: list[tuple[Path_, Any, bool]],
    encoding: str,
) -> None:
    hostile = _hostile_message(index, mutations, encoding)
    first, first_payload = _neighbour()
    last, last_payload = _neighbour()
    batch = [first, *([hostile[0]] if hostile else []), last]
    outcome = shared_processor.process(batch)
    assert outcome is not None
    assert _fate(shared_db, first, first_payload) == "stored"
    assert _fate(shared_db, last, last_payload) == "stored"
    if hostile is not None:
        assert _fate(shared_db, *hostile) in ("stored", "dead")


def _seeded_batch(seed: int, count: int) -> list[tuple[InboundMessage, dict[str, Any]]]:
    """The same kinds of mutation from a seeded generator, for the run through a real worker process."""
    rng = random.Random(seed)
    families: list[Callable[[], Any]] = [
        lambda: rng.choice(HUGE_INTS), lambda: rng.choice(ODD_FLOATS), lambda: rng.choice(TYPE_CHANGES),
        lambda: rng.choice(CONTROL), lambda: rng.choice(NON_ASCII_DIGITS), lambda: _deep(rng.randint(30, 250)),
        lambda: "y" * rng.randint(1_000, 300_000),
    ]
    out = []
    while len(out) < count:
        mutations = [(rng.choice(ALL_PATHS), rng.choice(families)(), rng.random() < 0.1)
                     for _ in range(rng.randint(1, 3))]
        made = _hostile_message(rng.randint(0, 2), mutations, rng.choice(["json", "protobuf"]), broker_safe=True)
        if made is not None:
            out.append(made)
    return out


def test_worker_process_survives_a_seeded_hostile_stream(
    db_url: str, broker: LocalMosquitto, worker_factory: Callable[..., WorkerProcess]
) -> None:
    worker = worker_factory(db_url, broker.url)
    worker.start()
    hostile = _seeded_batch(seed=10, count=150)
    good = [_neighbour() for _ in range(150)]
    stream = [m for pair in zip(good, hostile, strict=True) for m in pair]
    _publish(broker.url, [(m.topic, m.payload) for m, _ in stream])

    def settled() -> bool:
        assert worker.proc is not None and worker.proc.poll() is None, worker.log()[-3000:]
        return all(_fate(db_url, m, p) for m, p in good[-5:])

    wait_for(settled, timeout_s=90, what="the last neighbours")
    lost = [(m.topic, m.payload[:200]) for m, p in stream if _fate(db_url, m, p) is None]
    assert lost == []
    assert all(_fate(db_url, m, p) == "stored" for m, p in good)
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
