"""Zalo ZNS (Zalo Notification Service): a pre-approved template filled with parameters, sent to a phone.

``POST {base}/message/template`` with the Official Account's token in an ``access_token`` header and
``{"phone", "template_id", "template_data", "tracking_id"}``; the answer is HTTP 200 with an application
``error`` (0: sent, ``data.msg_id`` names the message). Sorted: error 0 delivered; -100 (Zalo's "unknown error,
retry later"), 5xx, no answer or an answer that is not ZNS's JSON deferred (it may or may not have gone: the
repeat carries the same ``tracking_id``); any other error refused, with its code and message kept.

The template (approved by Zalo, at most 400 characters) takes three parameters: ``title`` (the subject),
``content`` (the short text) and ``reference``; a message whose data holds ``zalo_template_data`` sends that
mapping instead, for templates with other parameters.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from gateways.notify.errors import DeliveryDeferred, DeliveryRefused
from gateways.notify.http import HttpPoster
from gateways.notify.notice import Notice
from ioc_core.contacts import phone_number
from ioc_core.errors import Invalid

__all__ = ["DEFAULT_ZALO_URL", "ZaloSender"]

DEFAULT_ZALO_URL = "https://business.openapi.zalo.me"
_RETRY_CODES = frozenset({-100})


class ZaloSender:
    channel = "zalo"

    def __init__(self, access_token: str, template_id: str, *, base_url: str = DEFAULT_ZALO_URL,
                 timeout_s: float = 15.0) -> None:
        self._token = access_token
        self._template_id = template_id
        self._url = base_url.rstrip("/") + "/message/template"
        self._http = HttpPoster(timeout_s=timeout_s)

    def request(self, notice: Notice) -> dict[str, Any]:
        """The request body for ``notice``."""
        try:
            phone = phone_number(notice.address)
        except Invalid as err:
            raise DeliveryRefused(err.message) from err
        custom = notice.data.get("zalo_template_data")
        data: dict[str, Any] = (
            {str(k): str(v) for k, v in custom.items()} if isinstance(custom, Mapping)
            else {"title": notice.subject[:100], "content": notice.text[:400], "reference": notice.reference[:30]})
        return {"phone": phone, "template_id": self._template_id, "template_data": data,
                "tracking_id": notice.reference}

    def send(self, notice: Notice, at: datetime) -> str:
        body = json.dumps(self.request(notice), ensure_ascii=False).encode("utf-8")
        answer = self._http.post(self._url, body, {"Content-Type": "application/json", "access_token": self._token})
        try:
            reply = json.loads(answer.text)
            code = reply["error"]
            if not isinstance(code, int):
                raise TypeError(code)
        except (ValueError, KeyError, TypeError) as err:
            raise DeliveryDeferred(f"Zalo answered HTTP {answer.status} without ZNS's JSON: "
                                   f"{answer.text.strip()[:200]}") from err
        message = str(reply.get("message", ""))
        if code == 0:
            data = reply.get("data") if isinstance(reply.get("data"), dict) else {}
            return f"Zalo msg_id {data.get('msg_id')}"
        said = f"Zalo error {code}: {message}"
        if code in _RETRY_CODES:
            raise DeliveryDeferred(said)
        raise DeliveryRefused(said)

    def close(self) -> None:
        self._http.close()
