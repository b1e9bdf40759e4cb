"""A webhook receiver as Standard Webhooks v1 asks one to be: it checks ``webhook-signature`` (HMAC-SHA256 of
``{webhook-id}.{webhook-timestamp}.{body}`` with the base64 content of the ``whsec_`` secret, any of the
space-separated ``v1,`` signatures), refuses timestamps outside its tolerance, and drops a repeated
``webhook-id`` (answering 200, as a receiver that already handled it should).

Written from the specification, not from our adapter, so a test that passes shows the two agree.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from tests.standins.loopback import LoopbackServer, Request

__all__ = ["WebhookReceiver"]


class WebhookReceiver(LoopbackServer):
    def __init__(self, secret: str, *, tolerance_s: float | None = 300.0) -> None:
        super().__init__()
        self._key = base64.b64decode(secret.removeprefix("whsec_"))
        self.tolerance_s = tolerance_s
        self.received: list[Request] = []  # every request with a valid signature, repeats included
        self.delivered: dict[str, Any] = {}  # webhook-id -> body, first seen only
        self.rejected: list[str] = []
        self.status = 200  # the answer to a valid, new delivery (e.g. 410 or 400 to test refusals)

    def answer(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        msg_id = request.headers.get("webhook-id", "")
        stamp = request.headers.get("webhook-timestamp", "")
        signatures = request.headers.get("webhook-signature", "").split()
        if not msg_id or "." in msg_id or not stamp.isdigit():
            return self._reject(f"bad headers: id {msg_id!r}, timestamp {stamp!r}")
        if self.tolerance_s is not None and abs(time.time() - int(stamp)) > self.tolerance_s:
            return self._reject(f"timestamp {stamp} outside the tolerance")
        expected = base64.b64encode(hmac.new(self._key, f"{msg_id}.{stamp}.".encode() + request.body,
                                             hashlib.sha256).digest()).decode()
        if not any(s.startswith("v1,") and hmac.compare_digest(s[3:], expected) for s in signatures):
            return self._reject("no signature matches")
        with self.lock:
            self.received.append(request)
            if msg_id in self.delivered:
                return 200, {"duplicate": True}, {}
            if self.status // 100 != 2:
                return self.status, {"message": "refused by the receiver"}, {}
            self.delivered[msg_id] = request.json()
        return 200, {"ok": True}, {}

    def _reject(self, why: str) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            self.rejected.append(why)
        return 401, {"message": why}, {}

    def ids_received(self) -> list[str]:
        with self.lock:
            return [r.headers["webhook-id"] for r in self.received]
