"""The evaluator in real time on a real PostgreSQL: a notified commit makes a round within moments (the fallback
timer is a minute), bursts coalesce, a lost connection is survived, and two runners do not both run rounds."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from gateways.database import Connection, connect
from gateways.local_postgres import LocalPostgres
from gateways.migrations import migrate
from gateways.wakeups import READINGS, notify
from ingest.registry import DeviceRecord, register_devices, seed_zones
from ioc_core.zones import Zone, load_default_zones
from operations.evaluator import LOCK_KEY, Change, evaluate
from operations.runner import Pace, Runner
from tests.db_rows import insert_measurement, insert_uplink
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

WARD = Zone("rt-ward", "Phường RT", "ward",
            (((108.220, 16.058), (108.224, 16.058), (108.224, 16.062), (108.220, 16.062), (108.220, 16.058)),),
            parent="hai-chau")
GAUGE = "00000000000000c1"
# The fallback timer never fires within a test; rounds are paced by the gap alone (a round of 0.1 s or less).
SLOW = Pace(interval_s=60.0, min_gap_s=0.25, retry_s=0.2, busy_share=0.5)


@pytest.fixture
def gauge(db_url: str) -> int:
    return _place_gauge(db_url)


def _place_gauge(db_url: str) -> int:
    """A river gauge in a ward of Hải Châu, reporting a normal level now; its device id."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        seed_zones(conn, [*load_default_zones(), WARD])
        register_devices(conn, [DeviceRecord(dev_eui=GAUGE, name="gauge", kind="water_level", latitude=16.060,
                                             longitude=108.222)])
        row = conn.execute("SELECT id FROM devices WHERE dev_eui = %s", (GAUGE,)).fetchone()
        assert row is not None
        _reading(conn, row[0], 0.5, notified=False)
        return int(row[0])


def _reading(conn: psycopg.Connection, device: int, level: float, *, notified: bool = True) -> None:
    """A water level of ``device`` now, committed with the ingest's notification (as ``write_batch`` does)."""
    now = datetime.now(UTC)
    with conn.transaction():
        insert_uplink(conn, device, now)
        insert_measurement(conn, device, "water_level", level, now)
        if notified:
            notify(conn, READINGS)


def _ward_status(conn: psycopg.Connection) -> str | None:
    row = conn.execute("SELECT status FROM zone_hazard_status WHERE zone_code = 'rt-ward' AND hazard = 'flood'"
                       ).fetchone()
    return None if row is None else str(row[0])


def _runner(db_url: str, pace: Pace = SLOW, name: str = "ioc-operations-test") -> Runner[list[Change]]:
    def connection() -> Connection:
        return connect(db_url, autocommit=True, application_name=name)

    return Runner(connection, evaluate, lambda: datetime.now(UTC), pace)


@contextmanager
def _running(*runners: Runner[list[Change]]) -> Iterator[Callable[[Runner[list[Change]]], None]]:
    """The runners on threads of their own; yields a function that stops one of them early."""
    stops = {id(r): threading.Event() for r in runners}
    threads = {id(r): threading.Thread(target=r.run, args=(stops[id(r)],), daemon=True) for r in runners}
    for t in threads.values():
        t.start()

    def stop(runner: Runner[list[Change]]) -> None:
        stops[id(runner)].set()
        threads[id(runner)].join(10)
        assert not threads[id(runner)].is_alive(), "the runner did not stop"

    try:
        yield stop
    finally:
        for s in stops.values():
            s.set()
        for t in threads.values():
            t.join(10)
        assert not any(t.is_alive() for t in threads.values()), "a runner did not stop"


def test_a_notified_commit_is_evaluated_within_moments(db_url: str, gauge: int) -> None:
    runner = _runner(db_url)
    with _running(runner), psycopg.connect(db_url, autocommit=True) as conn:
        # The first round catches up on what was stored before the runner started.
        wait_for(lambda: _ward_status(conn) == "normal", timeout_s=10, what="the catch-up round")
        _reading(conn, gauge, 2.0)  # above the kind's alert level (1.5 m)
        wait_for(lambda: _ward_status(conn) == "alert", timeout_s=5, what="a round woken by the notification")
        assert runner.counts.notifications >= 1
        # A commit that does not notify waits for the fallback timer: the wake-up is what made it fast.
        _reading(conn, gauge, 4.0, notified=False)
        with pytest.raises(AssertionError):
            wait_for(lambda: _ward_status(conn) == "danger", timeout_s=2, what="a round nobody asked for")
        change = conn.execute("SELECT from_status, to_status FROM zone_hazard_changes WHERE zone_code = 'rt-ward' "
                              "AND hazard = 'flood' ORDER BY id DESC LIMIT 1").fetchone()
        assert change == ("normal", "alert")


def test_a_burst_of_commits_costs_a_few_rounds(db_url: str, gauge: int) -> None:
    runner = _runner(db_url, Pace(interval_s=60.0, min_gap_s=1.0, retry_s=0.2, busy_share=0.5))
    with _running(runner), psycopg.connect(db_url, autocommit=True) as conn:
        wait_for(lambda: runner.counts.rounds == 1, timeout_s=10, what="the catch-up round")
        for i in range(40):
            _reading(conn, gauge, 0.5 + i / 100)
        wait_for(lambda: runner.counts.notifications == 40, timeout_s=10, what="all 40 notifications")
        wait_for(lambda: conn.execute("SELECT count(*) FROM zone_hazard_status WHERE zone_code = 'rt-ward' "
                                      "AND evidence->0->>'value' = '0.89'").fetchone()[0] == 1,
                 timeout_s=5, what="a round that saw the last reading")
        threading.Event().wait(1.5)  # time for one more round, if any is still pending
        # 40 commits in well under a second, at most one round per second: one or two rounds, plus the catch-up.
        assert 2 <= runner.counts.rounds <= 4, runner.counts


def test_a_lost_connection_is_reopened_and_caught_up(db_url: str, gauge: int) -> None:
    runner = _runner(db_url, name="ioc-operations-lost")
    with _running(runner), psycopg.connect(db_url, autocommit=True) as conn:
        wait_for(lambda: runner.counts.rounds >= 1, timeout_s=10, what="the first round")
        ended = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                             "WHERE application_name = 'ioc-operations-lost'").fetchone()
        assert ended == (1,)
        # Stored while the runner is away: not heard, but the round after the reconnect catches up.
        _reading(conn, gauge, 2.0)
        wait_for(lambda: runner.counts.failures >= 1, timeout_s=10, what="the runner noticing the lost connection")
        wait_for(lambda: _ward_status(conn) == "alert", timeout_s=10, what="the catch-up round after reconnecting")
        assert runner.counts.activations == 2
        _reading(conn, gauge, 4.0)  # and it listens again
        wait_for(lambda: _ward_status(conn) == "danger", timeout_s=5, what="a round woken on the new connection")


def test_a_round_refused_by_the_lock_is_tried_again(db_url: str, gauge: int) -> None:
    runner = _runner(db_url)
    with _running(runner), psycopg.connect(db_url, autocommit=True) as conn, psycopg.connect(db_url) as holder:
        wait_for(lambda: _ward_status(conn) == "normal", timeout_s=10, what="the catch-up round")
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))  # a round elsewhere (`evaluate` by hand)
        _reading(conn, gauge, 2.0)
        threading.Event().wait(1.0)
        assert _ward_status(conn) == "normal"
        holder.rollback()
        # The round it was woken for did not run; it is not left for the fallback timer a minute later.
        wait_for(lambda: _ward_status(conn) == "alert", timeout_s=5, what="the round once the lock is free")


def test_two_runners_one_active_the_other_takes_over(db_url: str, gauge: int) -> None:
    first, second = _runner(db_url, name="ioc-operations-a"), _runner(db_url, name="ioc-operations-b")
    with _running(first, second) as stop, psycopg.connect(db_url, autocommit=True) as conn:
        wait_for(lambda: first.active.is_set() or second.active.is_set(), timeout_s=10, what="an active runner")
        wait_for(lambda: first.counts.rounds + second.counts.rounds == 1, timeout_s=10, what="the catch-up round")
        active, standby = (first, second) if first.active.is_set() else (second, first)
        for level in (0.6, 0.7, 0.8):
            _reading(conn, gauge, level)
            threading.Event().wait(0.6)
        wait_for(lambda: active.counts.rounds == 4, timeout_s=5, what="a round per spaced notification")
        threading.Event().wait(0.5)
        assert active.counts.rounds == 4 and standby.counts.rounds == 0, (active.counts, standby.counts)
        assert not standby.active.is_set()
        stop(active)
        wait_for(standby.active.is_set, timeout_s=5, what="the standby taking over")
        _reading(conn, gauge, 2.0)
        wait_for(lambda: _ward_status(conn) == "alert", timeout_s=5, what="a round by the new active runner")
        assert standby.counts.rounds >= 2  # its catch-up round, then the notified one


def test_slow_rounds_are_spaced_to_their_share_of_the_time(db_url: str, gauge: int) -> None:
    """A round of 0.2 s with a busy share of 10 %: the next woken round waits 2 s, however many commits arrive
    (the round's cost grows with alarms and incidents; the ingest's database must not pay for it)."""
    starts: list[float] = []

    def slow(conn: Connection, at: datetime) -> list[Change] | None:
        starts.append(time.monotonic())
        threading.Event().wait(0.2)
        return evaluate(conn, at)

    runner: Runner[list[Change]] = Runner(lambda: connect(db_url, autocommit=True), slow, lambda: datetime.now(UTC),
                                          Pace(interval_s=60.0, min_gap_s=0.05, retry_s=0.2, busy_share=0.1))
    with _running(runner), psycopg.connect(db_url, autocommit=True) as conn:
        wait_for(lambda: runner.counts.rounds == 1, timeout_s=10, what="the catch-up round")
        for _ in range(30):  # a commit every 0.1 s for 3 s
            _reading(conn, gauge, 0.5)
            threading.Event().wait(0.1)
        wait_for(lambda: runner.counts.rounds >= 3, timeout_s=10, what="the rounds for the commits")
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert all(gap >= 1.9 for gap in gaps), gaps
        assert runner.counts.busy_s >= 0.2 * runner.counts.rounds


def test_a_database_outage_and_restart_is_waited_out(tmp_path: Path) -> None:
    server = LocalPostgres(tmp_path / "pg", durable=False)
    server.start()
    try:
        with psycopg.connect(server.url) as conn:
            migrate(conn)
        device = _place_gauge(server.url)
        runner = _runner(server.url)
        with _running(runner):
            wait_for(lambda: runner.counts.rounds >= 1, timeout_s=10, what="the first round")
            # Immediate: every session is cut without a goodbye and the restart runs crash recovery. (A SIGKILL
            # of the postmaster leaves its pid file behind, and pg_ctl then sometimes misses the restart.)
            server.stop("immediate")
            wait_for(lambda: runner.counts.failures >= 2, timeout_s=10, what="the runner retrying meanwhile")
            server.start()
            with psycopg.connect(server.url, autocommit=True) as conn:
                wait_for(runner.active.is_set, timeout_s=10, what="the runner active again")
                _reading(conn, device, 2.0)
                wait_for(lambda: _ward_status(conn) == "alert", timeout_s=5, what="a round after the restart")
    finally:
        server.stop("immediate")
