"""SMS through a generic HTTP gateway, the contract any provider's bridge can meet:

``POST <url>`` with ``Authorization: Bearer <token>`` and ``{"to": "+84905123456", "text": "...",
"reference": "<40 hex digits>"}``. A 2xx answer means accepted (its JSON ``id``, when present, is kept); 408,
429 and 5xx mean try again later (the gateway must drop a second request with a reference it has seen); other
4xx mean never (a bad number, a refused token). ``text`` is the message's short form, at most 400 characters:
the gateway splits it into SMS parts.
"""

from __future__ import annotations

import json
from datetime import datetime

from gateways.notify.errors import DeliveryRefused
from gateways.notify.http import HttpPoster
from gateways.notify.notice import Notice
from ioc_core.contacts import phone_number
from ioc_core.errors import Invalid

__all__ = ["SmsSender"]


class SmsSender:
    channel = "sms"

    def __init__(self, url: str, token: str | None, *, timeout_s: float = 15.0) -> None:
        self._url = url
        self._token = token
        self._http = HttpPoster(timeout_s=timeout_s)

    def send(self, notice: Notice, at: datetime) -> str:
        try:
            to = "+" + phone_number(notice.address)
        except Invalid as err:
            raise DeliveryRefused(err.message) from err
        body = json.dumps({"to": to, "text": (notice.text or notice.subject)[:400], "reference": notice.reference},
                          ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        answer = self._http.post(self._url, body, headers)
        try:
            ident = json.loads(answer.text).get("id")
        except (ValueError, AttributeError):
            ident = None
        return f"HTTP {answer.status}" + (f", id {ident}" if ident is not None else "")

    def close(self) -> None:
        self._http.close()
