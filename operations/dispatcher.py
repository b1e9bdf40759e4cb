"""The notification dispatcher: sends what the outbox holds, at least once, and records every attempt.

One row at a time, in its own transaction: the row is claimed with ``FOR UPDATE SKIP LOCKED`` (so any number of
dispatchers share the work and never send one row at once), sent through its channel's adapter while the lock
is held, and its attempt and outcome are written before the commit. A dispatcher killed between sending and
committing leaves the row pending and unchanged: the next one sends it again with the same idempotency key,
which receivers use to drop the repeat. (The interrupted attempt itself leaves no record; its repeat does.)

Outcomes, by the adapter's error: delivered → ``sent``; ``DeliveryDeferred`` → pending again after a backoff
that doubles from ``first_delay_s`` up to ``max_delay_s`` (no sooner than the receiver's ``Retry-After``), and
``failed`` once ``max_attempts`` are spent; ``DeliveryRefused`` → ``failed`` at once. Rows of channels this
dispatcher has no adapter for stay pending for one that has.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from gateways.database import Connection, database_errors
from gateways.notify import DeliveryDeferred, DeliveryRefused, Notice, Sender

__all__ = ["WAKE_CHANNEL", "Attempt", "RetryPolicy", "dispatch", "dispatch_one", "next_due", "waiting"]

log = logging.getLogger(__name__)

WAKE_CHANNEL = "ioc_notification_outbox"
"""What ``LISTEN`` names to hear of new rows (migration 0020 notifies it after every insert)."""

Outcome = Literal["sent", "retry", "failed"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 8
    first_delay_s: float = 10.0
    max_delay_s: float = 3600.0

    def delay(self, attempts: int, retry_after_s: float | None = None) -> timedelta:
        """The wait after the ``attempts``-th failed attempt. No jitter: rows fail at their own times already, and
        a fixed schedule is what an operator can read from the attempts."""
        backoff = min(self.first_delay_s * 2 ** max(attempts - 1, 0), self.max_delay_s)
        if retry_after_s is not None:
            backoff = max(backoff, min(retry_after_s, self.max_delay_s))
        return timedelta(seconds=backoff)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt, as recorded: which row, how it went and what the channel said."""

    outbox_id: int
    channel: str
    address: str
    idempotency_key: str
    attempt: int
    outcome: Outcome
    detail: str
    duration_ms: int
    next_attempt_at: datetime | None


_CLAIM = """
SELECT id, idempotency_key, event, channel, address, payload, attempts FROM notification_outbox
WHERE state = 'pending' AND next_attempt_at <= %s AND channel = ANY(%s)
ORDER BY next_attempt_at, id LIMIT 1 FOR UPDATE SKIP LOCKED"""


def dispatch_one(conn: Connection, senders: Mapping[str, Sender], at: datetime,
                 policy: RetryPolicy = RetryPolicy()) -> Attempt | None:
    """Send the most overdue row due at ``at`` that no one else holds; None when there is none. ``conn`` is an
    autocommit connection: the claim, the send and the record are one transaction of their own."""
    with database_errors("sending a notification"), conn.transaction():
        row = conn.execute(_CLAIM, (at, sorted(senders))).fetchone()
        if row is None:
            return None
        ident, key, event, channel, address, payload, attempts = row
        payload = payload if isinstance(payload, Mapping) else {}
        notice = Notice.of(str(key), str(event), str(address), payload)
        number = int(attempts) + 1
        started = time.monotonic()
        outcome: Outcome
        retry_after: float | None = None
        try:
            detail = senders[str(channel)].send(notice, at)
            outcome = "sent"
        except DeliveryRefused as err:
            detail, outcome = err.detail, "failed"
        except DeliveryDeferred as err:
            detail, outcome, retry_after = err.detail, "retry", err.retry_after_s
        except Exception as err:  # an adapter's bug: kept and retried, so one row cannot stop the others
            log.exception("the %s adapter failed on outbox row %s", channel, ident)
            detail, outcome = f"adapter error: {type(err).__name__}: {err}", "retry"
        duration_ms = int((time.monotonic() - started) * 1000)
        if outcome == "retry" and number >= policy.max_attempts:
            outcome, detail = "failed", f"{detail} (gave up after {number} attempts)"
        due = at + policy.delay(number, retry_after) if outcome == "retry" else None
        conn.execute("INSERT INTO notification_attempts (outbox_id, at, ok, detail, duration_ms) "
                     "VALUES (%s, %s, %s, %s, %s)", (ident, at, outcome == "sent", detail[:2000], duration_ms))
        conn.execute(
            """UPDATE notification_outbox SET attempts = %(n)s,
                   state = CASE WHEN %(outcome)s = 'retry' THEN 'pending' ELSE %(outcome)s END,
                   sent_at = CASE WHEN %(outcome)s = 'sent' THEN %(at)s END,
                   next_attempt_at = coalesce(%(due)s, next_attempt_at),
                   last_error = CASE WHEN %(outcome)s = 'sent' THEN NULL ELSE %(detail)s END
               WHERE id = %(id)s""",
            {"n": number, "outcome": outcome, "at": at, "due": due, "detail": detail[:2000], "id": ident})
    return Attempt(int(ident), str(channel), str(address), str(key), number, outcome, detail, duration_ms, due)


def dispatch(conn: Connection, senders: Mapping[str, Sender], at: datetime,
             policy: RetryPolicy = RetryPolicy(), *, limit: int = 100) -> list[Attempt]:
    """One round: up to ``limit`` rows due at ``at``, each once (a deferred row is due again only later)."""
    attempts: list[Attempt] = []
    while len(attempts) < limit:
        attempt = dispatch_one(conn, senders, at, policy)
        if attempt is None:
            break
        attempts.append(attempt)
    return attempts


def next_due(conn: Connection, channels: list[str]) -> datetime | None:
    """When the next pending row of these channels falls due (it may be past)."""
    with database_errors("reading the notification outbox"):
        row = conn.execute("SELECT min(next_attempt_at) FROM notification_outbox "
                           "WHERE state = 'pending' AND channel = ANY(%s)", (channels,)).fetchone()
    return row[0] if row else None


def waiting(conn: Connection) -> dict[tuple[str, str], int]:
    """Rows by (channel, state), for a summary: what is pending, sent and failed."""
    with database_errors("reading the notification outbox"):
        rows: list[Any] = conn.execute(
            "SELECT channel, state, count(*) FROM notification_outbox GROUP BY 1, 2 ORDER BY 1, 2").fetchall()
    return {(str(c), str(s)): int(n) for c, s, n in rows}
