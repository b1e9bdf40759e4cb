"""E-mail over SMTP (smtplib), one connection per message, STARTTLS and login when configured.

The ``Message-ID`` is derived from the outbox row's reference, so a message sent twice after a crash carries
the same id and a mail system (or a reader's client) can tell the repeat. SMTP answers are sorted by their
class: 4xx is a transient refusal (deferred), 5xx permanent (refused); no connection or a dropped one is
deferred.
"""

from __future__ import annotations

import smtplib
import ssl
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime

from gateways.notify.errors import DeliveryDeferred, DeliveryRefused
from gateways.notify.notice import Notice
from ioc_core.contacts import email_address
from ioc_core.errors import Invalid

__all__ = ["EmailSender"]


class EmailSender:
    channel = "email"

    def __init__(self, host: str, port: int, sender: str, *, user: str | None = None, password: str | None = None,
                 starttls: bool = False, timeout_s: float = 30.0) -> None:
        self._host = host
        self._port = port
        self._sender = sender
        self._user = user
        self._password = password
        self._starttls = starttls
        self._timeout_s = timeout_s
        self._domain = sender.rpartition("@")[2] or "ioc.invalid"

    def message(self, notice: Notice, at: datetime) -> EmailMessage:
        """The message as it is sent (``Date`` is the attempt's time)."""
        try:
            to = email_address(notice.address)
        except Invalid as err:
            raise DeliveryRefused(err.message) from err
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = to
        message["Subject"] = notice.subject or notice.text[:80]
        message["Date"] = format_datetime(at)
        message["Message-ID"] = f"<{notice.reference}@{self._domain}>"
        message["X-IOC-Event"] = notice.event
        message.set_content(notice.body or notice.text)
        return message

    def send(self, notice: Notice, at: datetime) -> str:
        message = self.message(notice, at)
        try:
            with smtplib.SMTP(self._host, self._port, timeout=self._timeout_s) as smtp:
                if self._starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self._user is not None:
                    smtp.login(self._user, self._password or "")
                refused = smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as err:
            raise _by_code(next(iter(err.recipients.values()))[0], f"recipient refused: {err.recipients}") from err
        except smtplib.SMTPResponseException as err:
            said = err.smtp_error
            text = said.decode("utf-8", "replace") if isinstance(said, bytes) else str(said)
            raise _by_code(err.smtp_code, f"SMTP {err.smtp_code} {text}") from err
        except (smtplib.SMTPException, OSError) as err:  # refused, timeout, dropped, no STARTTLS offered
            raise DeliveryDeferred(f"SMTP {self._host}:{self._port}: {err or type(err).__name__}") from err
        if refused:
            raise DeliveryRefused(f"recipient refused: {refused}")
        return f"accepted by {self._host}:{self._port} as {message['Message-ID']}"

    def close(self) -> None:
        """Nothing held between messages."""


def _by_code(code: int, detail: str) -> DeliveryDeferred | DeliveryRefused:
    return DeliveryDeferred(detail) if 400 <= code < 500 else DeliveryRefused(detail)
