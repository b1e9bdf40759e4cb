"""HTTP for the channel adapters (niquests): one POST, its failures sorted into deferred and refused.

Sorting by status, as Standard Webhooks and most gateways mean them: 2xx delivered; 408, 425, 429 and 5xx
deferred (honouring ``Retry-After`` in seconds); 3xx refused (a moved endpoint is a configuration to fix, and
following redirects would send signed messages elsewhere); other 4xx refused. No answer at all (refused
connection, timeout, a reset) is deferred.
"""

from __future__ import annotations

from collections.abc import Mapping

import niquests
import niquests.exceptions

from gateways.notify.errors import DeliveryDeferred, DeliveryRefused

__all__ = ["HttpAnswer", "HttpPoster"]

_DEFERRED = frozenset({408, 425, 429})
_KEEP = 300  # characters of an answer kept in an attempt's record


class HttpAnswer:
    """A 2xx answer: its status and body text."""

    def __init__(self, status: int, text: str) -> None:
        self.status = status
        self.text = text


class HttpPoster:
    """POSTs bodies to URLs through one session (kept-alive connections); ``close`` ends it."""

    def __init__(self, *, timeout_s: float, user_agent: str = "ioc-notify/1") -> None:
        self._timeout_s = timeout_s
        self._session = niquests.Session()
        self._session.headers["User-Agent"] = user_agent

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        try:
            response = self._session.post(url, data=body, headers=dict(headers), timeout=self._timeout_s,
                                          allow_redirects=False)
        except niquests.exceptions.Timeout as err:
            raise DeliveryDeferred(f"no answer from {url} within {self._timeout_s:g} s") from err
        except niquests.exceptions.InvalidURL as err:
            raise DeliveryRefused(f"bad URL {url!r}: {err}") from err
        except niquests.exceptions.RequestException as err:  # refused, reset, DNS, TLS
            raise DeliveryDeferred(f"cannot reach {url}: {_first_line(err)}") from err
        status = int(response.status_code or 0)
        text = response.text or ""
        if 200 <= status < 300:
            return HttpAnswer(status, text)
        said = f"HTTP {status} from {url}: {text.strip()[:_KEEP]}".rstrip(": ")
        if status in _DEFERRED or status >= 500:
            raise DeliveryDeferred(said, retry_after_s=_retry_after(response.headers.get("Retry-After")))
        raise DeliveryRefused(said)

    def close(self) -> None:
        self._session.close()


def _retry_after(value: str | None) -> float | None:
    # Only the seconds form: an HTTP date would need the receiver's clock, and the backoff covers it anyway.
    if value is None or not value.strip().isdigit():
        return None
    return float(min(int(value.strip()), 86_400))


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
