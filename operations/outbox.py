"""Messages to send, written to the notification outbox in the caller's transaction.

Whatever causes a message (an incident opened, an escalation, a warning approved) calls ``enqueue`` inside the
transaction that records it, so the message exists exactly when its cause does; the dispatcher sends it later,
at least once. Each row's idempotency key is the message's key with its channel and address: enqueueing the
same message twice (a round repeated after a crash) adds nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from gateways.database import Connection

__all__ = ["Channel", "Event", "Message", "enqueue", "enqueue_to"]

Event = Literal["incident_new", "escalated", "warning"]
Channel = Literal["webhook", "email", "zalo", "sms", "mqtt"]


@dataclass(frozen=True, slots=True)
class Message:
    """One thing to tell people, whatever the channel.

    ``key`` identifies the message (e.g. ``warning:<CAP identifier>``, ``incident:<id>:escalated:1``);
    ``text`` is the short form for SMS and Zalo (at most 400 characters, ZNS's limit); ``body`` the long form
    for email and webhooks; ``data`` the structured fields a webhook receives and a Zalo template is filled
    from.
    """

    key: str
    event: Event
    subject: str
    text: str
    body: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        return {"key": self.key, "event": self.event, "subject": self.subject, "text": self.text[:400],
                "body": self.body, "data": dict(self.data)}


def enqueue(conn: Connection, message: Message, at: datetime, *, users: Sequence[str] | None = None) -> int:
    """Queue ``message`` on every route for its event: the named operators' own routes when ``users`` is given,
    else the public routes (those without a user). Returns how many rows were added (repeats add none)."""
    if users is None:
        routes = conn.execute(
            "SELECT channel, address FROM notification_routes WHERE event = %s AND user_name IS NULL "
            "ORDER BY id", (message.event,)).fetchall()
    else:
        routes = conn.execute(
            "SELECT channel, address FROM notification_routes WHERE event = %s AND user_name = ANY(%s) "
            "ORDER BY id", (message.event, list(users))).fetchall()
    return sum(enqueue_to(conn, message, at, channel=str(c), address=str(a)) for c, a in routes)


def enqueue_to(conn: Connection, message: Message, at: datetime, *, channel: Channel | str, address: str) -> int:
    """Queue ``message`` for one channel and address (an MQTT topic, for the public feed); 1 if added."""
    row = conn.execute(
        """INSERT INTO notification_outbox (idempotency_key, event, channel, address, payload, created_at,
                                            next_attempt_at)
           VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s)
           ON CONFLICT (idempotency_key) DO NOTHING RETURNING id""",
        (f"{message.key}:{channel}:{address}", message.event, channel, address,
         json.dumps(message.payload(), ensure_ascii=False), at, at)).fetchone()
    return 0 if row is None else 1
