"""A local SMTP server (aiosmtpd) that keeps what it receives, parsed; ``refuse`` makes it answer RCPT with a
code, to test transient (4xx) and permanent (5xx) refusals."""

from __future__ import annotations

import email
import email.policy
import threading
from email.message import EmailMessage
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller

from gateways.local_postgres import free_port

__all__ = ["SmtpStandIn"]


class SmtpStandIn:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.refuse: str | None = None  # e.g. "450 mailbox busy" or "550 no such user"
        self._lock = threading.Lock()
        # aiosmtpd 1.4 cannot start on port 0 (it connects to the configured port to check it is up).
        self._controller = Controller(self, hostname="127.0.0.1", port=free_port())
        self.host = "127.0.0.1"
        self.port = self._controller.port

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.refuse is not None:
            return self.refuse
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self._lock:
            self.messages.append(parsed)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"

    def message_ids(self) -> list[str]:
        with self._lock:
            return [str(m["Message-ID"]) for m in self.messages]

    def __enter__(self) -> SmtpStandIn:
        self._controller.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._controller.stop()
