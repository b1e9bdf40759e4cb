"""A stand-in for Zalo ZNS's send API, ``POST /message/template``, on its documented request and answer.

Request: header ``access_token``; JSON ``{"phone": "84…", "template_id", "template_data": {…}, "tracking_id"}``.
Answer: HTTP 200 and ``{"error": 0, "message": "Success", "data": {"msg_id", "sent_time", "sending_mode",
"quota": {"dailyQuota", "remainingQuota"}}}``, or a non-zero ``error`` with its message. Codes from Zalo
Cloud's "Cách xử lý mã lỗi" page: -108 phone number invalid, -109 template ID invalid, -111 template data
empty, -112 template data invalid (by the list's order). ASSUMED, not confirmed from Zalo's pages (see
docs/design/operations-research.md §4.2): -124 for a bad access token and -144 for an exhausted quota; the
adapter does not depend on these numbers, only on "not 0".
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from tests.standins.loopback import LoopbackServer, Request

__all__ = ["ZaloStandIn"]

_PHONE = re.compile(r"^84\d{9,10}$")
_TRACKING = re.compile(r"^[A-Za-z0-9_-]{1,48}$")
ASSUMED_BAD_TOKEN = -124
ASSUMED_OUT_OF_QUOTA = -144


class ZaloStandIn(LoopbackServer):
    def __init__(self, access_token: str, templates: Mapping[str, Sequence[str]], *, daily_quota: int = 500) -> None:
        """``templates``: approved template id -> its parameter names."""
        super().__init__()
        self.access_token = access_token
        self.templates = {k: set(v) for k, v in templates.items()}
        self.daily_quota = daily_quota
        self.sent: list[dict[str, Any]] = []  # accepted requests' bodies, in order
        self.errors: list[int] = []
        self._ids = itertools.count(1)

    def answer(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        if request.path != "/message/template":
            return 404, {"message": "not found"}, {}
        error = self._check(request)
        if error is not None:
            code, message = error
            with self.lock:
                self.errors.append(code)
            return 200, {"error": code, "message": message}, {}
        body = request.json()
        with self.lock:
            self.sent.append(body)
            used = len(self.sent)
            msg_id = f"{next(self._ids):032x}"
        return 200, {"error": 0, "message": "Success", "data": {
            "msg_id": msg_id, "sent_time": str(int(time.time() * 1000)), "sending_mode": "default",
            "quota": {"dailyQuota": str(self.daily_quota), "remainingQuota": str(self.daily_quota - used)}}}, {}

    def _check(self, request: Request) -> tuple[int, str] | None:
        if request.headers.get("access_token") != self.access_token:
            return ASSUMED_BAD_TOKEN, "Access token is invalid"
        try:
            body = request.json()
        except ValueError:
            return -100, "Unknown error"
        if not isinstance(body, dict):
            return -100, "Unknown error"
        if not _PHONE.fullmatch(str(body.get("phone", ""))):
            return -108, "Phone number invalid"
        params = self.templates.get(str(body.get("template_id", "")))
        if params is None:
            return -109, "Template ID invalid"
        data = body.get("template_data")
        if not data:
            return -111, "Template data empty"
        if not isinstance(data, dict) or set(data) != params or not all(isinstance(v, str) for v in data.values()):
            return -112, "Template data invalid"
        tracking = body.get("tracking_id")
        if tracking is not None and not _TRACKING.fullmatch(str(tracking)):
            return -100, "Unknown error"
        with self.lock:
            if len(self.sent) >= self.daily_quota:
                return ASSUMED_OUT_OF_QUOTA, "Out of quota"
        return None

    def tracking_ids(self) -> list[str]:
        with self.lock:
            return [str(b.get("tracking_id")) for b in self.sent]
