"""The ingest wakes the hazard evaluator: a batch that stored measurements notifies ``ioc_readings`` once, on
commit only; a rolled-back batch and a batch of repeats send nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import psycopg
import pytest

from gateways.database import connect
from gateways.migrations import Mode
from gateways.mqtt import InboundMessage
from gateways.wakeups import READINGS, Listener
from ingest.codecs.library import CodecLibrary
from ingest.processor import BatchProcessor
from ingest.writer import write_batch
from tests.reference import CHIRPSTACK_SAMPLES

pytestmark = [pytest.mark.integration, pytest.mark.both_modes]


def _samples() -> list[InboundMessage]:
    events = json.loads(CHIRPSTACK_SAMPLES.read_text())["events"]
    return [InboundMessage(e["topic"], e["wire"].encode(), mid=1, received_at=time.time(), session=0,
                           duplicate=False) for e in events]


@pytest.fixture
def listener(db_url: str) -> Iterator[Listener]:
    conn = connect(db_url, autocommit=True)
    try:
        yield Listener(conn, READINGS)
    finally:
        conn.close()


def test_a_batch_notifies_once_and_only_when_committed(db_url: str, storage: Mode, listener: Listener) -> None:
    processor = BatchProcessor(db_url, CodecLibrary.discover())
    try:
        batch = processor.prepare(_samples())
    finally:
        processor.close()
    assert batch is not None and batch.uplink_measurements

    # Written inside a transaction of the caller's that is then rolled back: nothing is heard, before or after.
    with psycopg.connect(db_url) as outer:
        outer.execute("SELECT 1")  # opens the transaction, so write_batch's own becomes a savepoint in it
        result = write_batch(outer, batch, storage)
        assert result.measurements > 0
        assert listener.wait(0.5) == 0, "notified before the commit"
        outer.rollback()
    assert listener.wait(0.5) == 0, "notified for a rolled-back batch"

    with psycopg.connect(db_url) as conn:
        result = write_batch(conn, batch, storage)
        assert result.measurements > 0
        assert listener.wait(5) == 1  # one notification for the whole batch
        assert listener.wait(0.5) == 0
        # The same batch again stores nothing new (idempotent): nobody is woken for it.
        again = write_batch(conn, batch, storage)
        assert again.measurements == 0 and again.duplicates == result.uplinks
        assert listener.wait(0.5) == 0
