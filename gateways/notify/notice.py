"""One message to one address, as the channel adapters take it: an outbox row parsed at the edge."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

__all__ = ["Notice", "Sender"]


@dataclass(frozen=True, slots=True)
class Notice:
    """``idempotency_key`` is the outbox row's (the message's key, channel and address); ``payload`` is the row's
    JSON as queued (``operations.outbox.Message.payload``), sent as is where a channel carries JSON."""

    idempotency_key: str
    event: str
    address: str
    subject: str
    text: str
    body: str
    data: Mapping[str, Any] = field(default_factory=dict)
    payload: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, idempotency_key: str, event: str, address: str, payload: Mapping[str, Any]) -> Notice:
        data = payload.get("data")
        return cls(idempotency_key=idempotency_key, event=event, address=address,
                   subject=str(payload.get("subject") or ""), text=str(payload.get("text") or ""),
                   body=str(payload.get("body") or payload.get("text") or ""),
                   data=data if isinstance(data, Mapping) else {}, payload=payload)

    @property
    def reference(self) -> str:
        """The idempotency key in a form every receiver takes: 40 hex digits (Zalo's tracking_id asks for at most
        48 characters without specials; Standard Webhooks' ids may not hold a dot). The same key always gives
        the same reference, so a repeat after a crash carries the first send's."""
        return hashlib.sha256(self.idempotency_key.encode("utf-8")).hexdigest()[:40]


class Sender(Protocol):
    """A channel adapter: ``send`` delivers or raises ``DeliveryDeferred`` / ``DeliveryRefused``; the string it
    returns says what the receiver answered (kept with the attempt)."""

    channel: str

    def send(self, notice: Notice, at: datetime) -> str: ...

    def close(self) -> None: ...
