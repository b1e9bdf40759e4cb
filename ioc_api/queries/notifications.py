"""Notification routes (who is told what, where) and the outbox with its attempts, as the API reads and changes
them. Addresses are checked and stored in one form (``ioc_core.contacts``), so the dispatcher meets only good
ones; each change of routes is audited in its transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from gateways.database import Connection
from ioc_api.queries.audit import audit
from ioc_core.contacts import email_address, phone_number, webhook_url
from ioc_core.errors import Invalid, NotFound

__all__ = ["Attempt", "OutboxEntry", "Route", "find_outbox", "list_outbox", "list_routes", "normal_address",
           "replace_routes"]


@dataclass(frozen=True, slots=True)
class Route:
    id: int
    user: str | None
    event: str
    channel: str
    address: str


@dataclass(frozen=True, slots=True)
class Attempt:
    at: datetime
    ok: bool
    detail: str
    duration_ms: int


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    id: int
    idempotency_key: str
    event: str
    channel: str
    address: str
    state: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None
    last_error: str | None
    payload: dict[str, Any]
    history: tuple[Attempt, ...] = ()


def normal_address(channel: str, address: str) -> str:
    """The address in the form stored and sent; Invalid (field ``address``) when the channel cannot use it."""
    if channel == "webhook":
        return webhook_url(address)
    if channel == "email":
        return email_address(address)
    if channel in ("zalo", "sms"):
        return phone_number(address)
    raise Invalid(f"unknown channel {channel!r}", field="channel")


def list_routes(conn: Connection, *, user: str | None, events: Sequence[str]) -> list[Route]:
    """The routes of ``user`` (None: the public ones) for these events."""
    rows = conn.execute(
        "SELECT id, user_name, event, channel, address FROM notification_routes "
        "WHERE user_name IS NOT DISTINCT FROM %s AND event = ANY(%s) ORDER BY event, channel, address",
        (user, list(events))).fetchall()
    return [Route(*r) for r in rows]


def replace_routes(conn: Connection, *, user: str | None, events: Sequence[str],
                   routes: Iterable[tuple[str, str, str]], actor: str) -> list[Route]:
    """Make ``(event, channel, address)`` the whole set of ``user``'s routes for ``events``; audited."""
    wanted = list(dict.fromkeys((e, c, normal_address(c, a)) for e, c, a in routes))
    for event, _c, _a in wanted:
        if event not in events:
            raise Invalid(f"event {event!r} is not one of {', '.join(events)}", field="event")
    with conn.transaction():
        before = list_routes(conn, user=user, events=events)
        conn.execute("DELETE FROM notification_routes WHERE user_name IS NOT DISTINCT FROM %s AND event = ANY(%s)",
                     (user, list(events)))
        for event, channel, address in wanted:
            conn.execute("INSERT INTO notification_routes (user_name, event, channel, address) "
                         "VALUES (%s, %s, %s, %s)", (user, event, channel, address))
        after = list_routes(conn, user=user, events=events)
        audit(conn, actor, "update", "notification_routes", user or "public", {
            "before": [[r.event, r.channel, r.address] for r in before],
            "after": [[r.event, r.channel, r.address] for r in after]})
    return after


_OUTBOX_COLUMNS = ("id, idempotency_key, event, channel, address, state, attempts, created_at, next_attempt_at, "
                   "sent_at, last_error, payload")


def list_outbox(conn: Connection, *, state: str | None = None, channel: str | None = None,
                event: str | None = None, limit: int = 100, before_id: int | None = None) -> list[OutboxEntry]:
    """Newest first; ``before_id`` pages backwards."""
    rows = conn.execute(
        f"""SELECT {_OUTBOX_COLUMNS} FROM notification_outbox
            WHERE (%(state)s::text IS NULL OR state = %(state)s)
              AND (%(channel)s::text IS NULL OR channel = %(channel)s)
              AND (%(event)s::text IS NULL OR event = %(event)s)
              AND (%(before)s::bigint IS NULL OR id < %(before)s)
            ORDER BY id DESC LIMIT %(limit)s""",
        {"state": state, "channel": channel, "event": event, "before": before_id, "limit": limit}).fetchall()
    return [OutboxEntry(*r) for r in rows]


def find_outbox(conn: Connection, ident: int) -> OutboxEntry:
    """One message with every attempt; NotFound when there is none."""
    row = conn.execute(f"SELECT {_OUTBOX_COLUMNS} FROM notification_outbox WHERE id = %s", (ident,)).fetchone()
    if row is None:
        raise NotFound(f"outbox message {ident} does not exist")
    history = conn.execute("SELECT at, ok, detail, duration_ms FROM notification_attempts WHERE outbox_id = %s "
                           "ORDER BY at, id", (ident,)).fetchall()
    return replace(OutboxEntry(*row), history=tuple(Attempt(*h) for h in history))
