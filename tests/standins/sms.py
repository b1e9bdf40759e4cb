"""A stand-in for the generic HTTP SMS gateway whose contract ``gateways/notify/sms.py`` states.

``POST /send`` with ``Authorization: Bearer <token>`` and ``{"to": "+84…", "text": "…", "reference": "…"}``:
401 for a wrong token, 400 for a bad number or text, 202 ``{"id": …}`` when accepted. A reference seen before
is answered 200 with the first message's id and not sent again, as the contract asks of a gateway.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from tests.standins.loopback import LoopbackServer, Request

__all__ = ["SmsStandIn"]

_TO = re.compile(r"^\+84\d{9,10}$")


class SmsStandIn(LoopbackServer):
    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token
        self.messages: dict[str, dict[str, Any]] = {}  # reference -> body, first seen
        self.requests = 0
        self._ids = itertools.count(1)
        self._id_of: dict[str, str] = {}

    def answer(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"error": "bad token"}, {}
        try:
            body = request.json()
        except ValueError:
            return 400, {"error": "not JSON"}, {}
        if not isinstance(body, dict) or not _TO.fullmatch(str(body.get("to", ""))):
            return 400, {"error": "to must be +84 and 9 or 10 digits"}, {}
        text, reference = body.get("text"), body.get("reference")
        if not isinstance(text, str) or not 0 < len(text) <= 400 or not isinstance(reference, str) or not reference:
            return 400, {"error": "text (1-400 characters) and reference are required"}, {}
        with self.lock:
            self.requests += 1
            if reference in self._id_of:
                return 200, {"id": self._id_of[reference], "duplicate": True}, {}
            self._id_of[reference] = ident = f"sms-{next(self._ids)}"
            self.messages[reference] = body
        return 202, {"id": ident}, {}
