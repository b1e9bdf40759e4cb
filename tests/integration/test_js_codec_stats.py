"""JavaScript codec health reaches the worker's log line and its ingest_stats rows (real PostgreSQL)."""

from __future__ import annotations

import logging

import pytest

from gateways.database import connect
from ingest.codecs.js_runtime import JsCodec, JsLimits
from ingest.stats import IngestStats

pytestmark = pytest.mark.integration


def test_timeouts_refusals_and_disabled_codecs_are_stored_per_interval(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    codec = JsCodec("js:spin", "function decodeUplink(i) { for (;;) {} }",
                    limits=JsLimits(time_limit_ms=20, memory_limit_mb=16, breaker_failures=2))
    stats = IngestStats("js-test", 1.0, codec.runtime.health)
    for _ in range(5):
        codec.decode(b"\x01", 1)
    conn = connect(db_url, autocommit=True)
    try:
        with caplog.at_level(logging.INFO, logger="ingest.stats"):
            assert stats.report(conn)
        codec.decode(b"\x01", 1)
        assert stats.report(conn)
        rows = conn.execute(
            """SELECT js_timeouts, js_crashes, js_out_of_memory, codec_refused, codecs_disabled
               FROM ingest_stats WHERE worker = 'js-test' ORDER BY time"""
        ).fetchall()
    finally:
        conn.close()
        codec.runtime.close()
    # Each row holds its own interval's counts; "disabled" is how many codecs were off when it was written.
    assert rows == [(2, 0, 0, 3, 1), (0, 0, 0, 1, 1)]
    assert ("JS codecs: 2 timeouts, 0 crashes, 0 out of memory, 3 uplinks refused; disabled: js:spin"
            in caplog.text)
