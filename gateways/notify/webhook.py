"""Webhooks signed as Standard Webhooks v1 (HMAC-SHA256): ``webhook-id``, ``webhook-timestamp``,
``webhook-signature: v1,<base64>`` over ``{id}.{timestamp}.{body}``, the key being the ``whsec_`` secret's
base64 content.

``webhook-id`` is the outbox row's reference, the same on every attempt, so a receiver deduplicates by it; the
timestamp is the attempt's. The body follows the spec's recommended shape: ``{"type", "timestamp", "data"}``
with a dotted type (``incident.new``, ``incident.escalated``, ``warning.issued``) and the queued payload as data.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime

from gateways.notify.errors import DeliveryRefused
from gateways.notify.http import HttpPoster
from gateways.notify.notice import Notice
from ioc_core.contacts import webhook_secret_key, webhook_url
from ioc_core.errors import ConfigError, Invalid

__all__ = ["EVENT_TYPES", "WebhookSender", "secret_key", "signature"]

EVENT_TYPES = {"incident_new": "incident.new", "escalated": "incident.escalated", "warning": "warning.issued"}


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret; ConfigError unless it holds 24 to 64 bytes."""
    try:
        return webhook_secret_key(secret)
    except ValueError as err:
        raise ConfigError(f"IOC_NOTIFY_WEBHOOK_SECRET {err}") from err


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` and the base64 HMAC-SHA256 of ``{id}.{timestamp}.{body}``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")


class WebhookSender:
    """POSTs signed JSON to the row's address (an http(s) URL)."""

    channel = "webhook"

    def __init__(self, secret: str, *, timeout_s: float = 15.0) -> None:
        self._key = secret_key(secret)
        self._http = HttpPoster(timeout_s=timeout_s)

    def send(self, notice: Notice, at: datetime) -> str:
        try:
            url = webhook_url(notice.address)
        except Invalid as err:
            raise DeliveryRefused(err.message) from err
        timestamp = int(at.timestamp())
        body = json.dumps({"type": EVENT_TYPES.get(notice.event, notice.event.replace("_", ".")),
                           "timestamp": at.isoformat(), "data": dict(notice.payload)},
                          ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        msg_id = f"msg_{notice.reference}"
        answer = self._http.post(url, body, {
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(self._key, msg_id, timestamp, body),
        })
        return f"HTTP {answer.status}"

    def close(self) -> None:
        self._http.close()
