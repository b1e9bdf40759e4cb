"""The crash-loop guard: a message that kills the worker outright costs two exits and ends as a dead letter.

A supervisor (here a loop, in production systemd's Restart=) restarts the worker whenever it exits. Before the
guard the worker died on the redelivered batch at every start, and the valid uplinks behind it never landed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from gateways.local_mosquitto import LocalMosquitto
from tests.e2e.crashing_worker import EXIT_CODE
from tests.e2e.test_worker import WorkerProcess, _publish, worker_factory
from tests.hostile_events import encode, sample, topic_for
from tests.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

__all__ = ["worker_factory"]

CRASHING = [sys.executable, str(Path(__file__).resolve().parent / "crashing_worker.py")]


def _state(db_url: str) -> tuple[int, list[tuple[str, str]]]:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM uplinks").fetchone()
        dead = conn.execute("SELECT stage, topic FROM dead_letters").fetchall()
    return (int(row[0]) if row else 0), [(str(s), str(t)) for s, t in dead]


def _messages(poison_at: int, total: int) -> list[tuple[str, bytes]]:
    out = []
    for i in range(total):
        payload = sample(0)
        if i == poison_at:
            payload["deviceInfo"]["devEui"] = "0101010101010199"
            payload["object"] = {"kill_worker": 1, "temperature": 20.0}
        body = encode(payload)
        assert body is not None
        out.append((topic_for(payload), body))
    return out


def test_a_message_that_kills_the_worker_is_found_and_dead_lettered(
    db_url: str, broker: LocalMosquitto, worker_factory: Callable[..., WorkerProcess]
) -> None:
    # A long batch age: the poison arrives in one batch with the valid messages around it.
    worker = worker_factory(db_url, broker.url, CRASHING, IOC_INGEST_BATCH_AGE_MS="500")
    worker.start()
    _publish(broker.url, _messages(poison_at=60, total=121))
    exits: list[int] = []

    def recovered() -> bool:
        assert worker.proc is not None
        code = worker.proc.poll()
        if code is not None:
            exits.append(code)
            assert len(exits) <= 3, f"the worker keeps dying: exits {exits}\n{worker.log()[-4000:]}"
            worker.start(wait_running=False)  # the supervisor's restart
        stored, dead = _state(db_url)
        return stored == 120 and bool(dead)

    eventually(recovered, timeout_s=120, interval_s=0.2)  # the assertions below say what it came to
    stored, dead = _state(db_url)
    assert stored == 120, f"{stored} of 120 valid uplinks stored; exits {exits}\n{worker.log()[-4000:]}"
    assert dead == [("crash", topic_for(sample(0, dev_eui="0101010101010199")))]
    # Once in its batch, once alone; then the guard set it aside and the worker runs on.
    assert exits == [EXIT_CODE, EXIT_CODE]
    time.sleep(1.0)
    assert worker.proc is not None and worker.proc.poll() is None
    # Back to batches after the recovery: new messages flow, and a clean stop clears the mark.
    _publish(broker.url, _messages(poison_at=-1, total=30))
    eventually(lambda: _state(db_url)[0] >= 150, timeout_s=30)
    assert _state(db_url)[0] == 150
    log = worker.log()
    assert "died holding messages" in log and "recovery over" in log
    worker.stop()
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT running, suspect FROM ingest_guard").fetchall() == [(False, None)]
