"""The demo's operations stage hands on a real database: the escalation timers it shortens, the two operators it
creates afresh at each start, and the previous run's webhook messages it gives up."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateways.database import Connection, connect
from ingest.registry import seed_zones
from ioc_cli.demo_operations import (
    CITY_USER,
    DISTRICT_USER,
    TECHNICIAN_USER,
    create_operators,
    forget_gone_stand_ins,
    shorten_escalation,
)
from ioc_core.zones import load_default_zones
from operations.outbox import Message, enqueue_to

pytestmark = [pytest.mark.integration]

T0 = datetime(2026, 11, 3, 1, 0, tzinfo=UTC)


@pytest.fixture
def conn(db_url: str) -> Iterator[Connection]:
    with connect(db_url, autocommit=True) as c:
        yield c


def test_every_severity_that_escalates_does_so_after_the_demos_timer(conn: Connection) -> None:
    assert shorten_escalation(conn, 45.4) == {"minor": 45, "major": 45, "critical": 45}
    timers = dict(conn.execute("SELECT severity, escalate_after_s FROM alarm_severities").fetchall())
    assert timers == {"info": None, "minor": 45, "major": 45, "critical": 45}  # info never escalates


def test_the_operators_are_made_afresh_with_private_keys(conn: Connection, tmp_path: Path) -> None:
    seed_zones(conn, load_default_zones())
    first = create_operators(conn, tmp_path, "hai-chau")
    keys = [op.key_file.read_text() for op in first]
    district, city, technician = create_operators(conn, tmp_path, "hai-chau")  # a second run: new keys
    assert (district.name, district.zones, city.name, city.zones) == (DISTRICT_USER, ("hai-chau",), CITY_USER, ())
    assert (technician.name, technician.zones) == (TECHNICIAN_USER, ("hai-chau",))
    assert [op.key_file.read_text() for op in (district, city, technician)] != keys
    for op in (district, city, technician):
        assert op.key_file == tmp_path / f"api-key-{op.name}" and stat.S_IMODE(op.key_file.stat().st_mode) == 0o600
    rows = conn.execute(
        """SELECT u.name, u.role, array_remove(array_agg(z.code ORDER BY z.code), NULL) FROM api_users u
           LEFT JOIN api_user_zones uz ON uz.user_id = u.id LEFT JOIN zones z ON z.id = uz.zone_id
           WHERE u.name LIKE 'demo-%' GROUP BY u.name, u.role ORDER BY u.name""").fetchall()
    assert rows == [(CITY_USER, "operator", []), (DISTRICT_USER, "operator", ["hai-chau"]),
                    (TECHNICIAN_USER, "technician", ["hai-chau"])]


def test_a_previous_runs_pending_webhooks_are_given_up_and_nothing_else(conn: Connection) -> None:
    def queued(n: int, channel: str, address: str) -> None:
        message = Message(key=f"warning:w{n}", event="warning", subject="s", text="t", body="b")
        assert enqueue_to(conn, message, T0, channel=channel, address=address) == 1

    queued(1, "webhook", "http://127.0.0.1:4001/hooks/warnings")      # the previous run's stand-in
    queued(2, "webhook", "http://127.0.0.1:5002/hooks/demo-city")     # this run's
    queued(3, "webhook", "https://ops.example.org/hooks")             # someone's own receiver
    queued(4, "sms", "84905000113")                                   # this run's SMS stand-in takes it
    queued(5, "webhook", "http://127.0.0.1:4001/hooks/demo-city")
    conn.execute("UPDATE notification_outbox SET state = 'sent' WHERE idempotency_key LIKE 'warning:w5:%'")
    assert forget_gone_stand_ins(conn, "http://127.0.0.1:5002", T0) == 1
    states = dict(conn.execute("SELECT split_part(idempotency_key, ':', 2), state FROM notification_outbox").fetchall())
    assert states == {"w1": "failed", "w2": "pending", "w3": "pending", "w4": "pending", "w5": "sent"}
    (error,) = conn.execute("SELECT last_error FROM notification_outbox WHERE state = 'failed'").fetchone() or ("",)
    assert "previous run" in error
    assert forget_gone_stand_ins(conn, "http://127.0.0.1:5002", T0) == 0
