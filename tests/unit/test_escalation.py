"""The escalation timer with a controllable clock: only unacknowledged incidents, from opening or the last
escalation, per the severity's timer, up to the last level."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from operations.escalation import MAX_LEVEL, due

OPENED = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return OPENED + timedelta(seconds=seconds)


def test_an_unacknowledged_incident_escalates_when_its_timer_runs_out() -> None:
    args = {"state": "new", "opened_at": OPENED, "escalated_at": None, "level": 0, "escalate_after_s": 300}
    assert not due(**args, at=at(0))
    assert not due(**args, at=at(299))
    assert due(**args, at=at(300))
    assert due(**args, at=at(3600))


@pytest.mark.parametrize("state", ["acknowledged", "in_progress", "resolved", "closed"])
def test_an_acknowledged_or_later_incident_never_escalates(state: str) -> None:
    assert not due(state=state, opened_at=OPENED, escalated_at=None, level=0, escalate_after_s=300, at=at(10_000))


def test_a_severity_without_a_timer_never_escalates() -> None:
    assert not due(state="new", opened_at=OPENED, escalated_at=None, level=0, escalate_after_s=None,
                   at=at(10**6))


def test_the_next_escalation_counts_from_the_last() -> None:
    escalated = at(300)
    args = {"state": "new", "opened_at": OPENED, "escalated_at": escalated, "level": 1, "escalate_after_s": 300}
    assert not due(**args, at=at(599))
    assert due(**args, at=at(600))


def test_escalation_stops_at_the_last_level() -> None:
    args = {"state": "new", "opened_at": OPENED, "escalated_at": at(900), "escalate_after_s": 300}
    assert due(**args, level=MAX_LEVEL - 1, at=at(1200))
    assert not due(**args, level=MAX_LEVEL, at=at(10**6))
