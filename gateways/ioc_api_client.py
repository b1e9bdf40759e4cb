"""The IOC API over HTTP (niquests), for commands run away from the server: the caller's key, roles and audit apply.

Errors, sorted by what the caller should do::

    IocError
    └── IocApiError              .status (None when no answer came), .code and .field from the API's error body
        ├── IocApiUnavailable    (also a RetriableError) refused connection, timeout, 503: try again later
        └── IocApiRefused        401/403/404/409/413/422/429…: the API's considered answer, with its message

Every answer of the API is JSON; an error is ``{"error": {"code", "message", "field"?}}``. Answers are returned
as decoded JSON: the caller parses them into its own types.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote

import niquests
import niquests.exceptions
from pydantic import SecretStr

from ioc_core.errors import IocError, RetriableError

__all__ = ["IocApiClient", "IocApiError", "IocApiRefused", "IocApiUnavailable"]

API_PREFIX = "/api/v1"
_CHUNK = 64 * 1024


class IocApiError(IocError):
    """Root of this adapter's errors; ``status`` is the HTTP status, None when none came back."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.field = field


class IocApiUnavailable(IocApiError, RetriableError):
    """The API is unreachable, too slow, or its database is (503): try again later."""


class IocApiRefused(IocApiError):
    """The API refused the request; sending it again unchanged gets the same answer."""


class _Upload:
    """A body read in chunks with a known length (so it goes out with Content-Length, not chunked), calling
    ``sent`` with the byte count of each chunk as it is handed to the connection."""

    def __init__(self, data: bytes, sent: Callable[[int], None] | None) -> None:
        self._data = memoryview(data)
        self._at = 0
        self._sent = sent

    def __len__(self) -> int:
        return len(self._data)

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size is None or size < 0 else min(len(self._data), self._at + min(size, _CHUNK))
        chunk = bytes(self._data[self._at:end])
        self._at = end
        if chunk and self._sent is not None:
            self._sent(len(chunk))
        return chunk


class IocApiClient:
    """A synchronous client of one IOC API, authenticated by an API key (``Authorization: Bearer``)."""

    def __init__(self, url: str, key: SecretStr, *, timeout_s: float = 60.0) -> None:
        self._base = url.rstrip("/") + API_PREFIX
        self._timeout_s = timeout_s
        self._session = niquests.Session()
        self._session.headers["Authorization"] = f"Bearer {key.get_secret_value()}"
        self._session.headers["Accept"] = "application/json"
        self._url = url.rstrip("/")

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> IocApiClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- the device registry ---------------------------------------------------------------------------------

    def list_devices(self, filters: Mapping[str, str | int]) -> Any:
        return self._call("GET", "/devices", params=dict(filters))

    def get_device(self, dev_eui: str) -> Any:
        return self._call("GET", f"/devices/{quote(dev_eui, safe='')}")

    def register_device(self, body: Mapping[str, Any]) -> Any:
        return self._call("POST", "/devices", json=dict(body))

    def update_device(self, dev_eui: str, body: Mapping[str, Any]) -> Any:
        return self._call("PATCH", f"/devices/{quote(dev_eui, safe='')}", json=dict(body))

    def decommission_device(self, dev_eui: str, reason: str | None) -> Any:
        params = {"reason": reason} if reason else None
        return self._call("DELETE", f"/devices/{quote(dev_eui, safe='')}", params=params)

    def recommission_device(self, dev_eui: str, body: Mapping[str, Any]) -> Any:
        return self._call("POST", f"/devices/{quote(dev_eui, safe='')}/recommission", json=dict(body))

    def import_devices(self, csv: bytes, *, dry_run: bool, sent: Callable[[int], None] | None = None) -> Any:
        """``POST /devices:import``; ``sent`` hears of each chunk of the file as it goes out."""
        return self._call("POST", "/devices:import", params={"dry_run": "true" if dry_run else "false"},
                          data=_Upload(csv, sent), headers={"Content-Type": "text/csv; charset=utf-8",
                                                            "Content-Length": str(len(csv))})

    # -- operations ------------------------------------------------------------------------------------------

    def set_my_notifications(self, routes: Sequence[Mapping[str, str]]) -> Any:
        """``PUT /me/notifications``: the caller's own channels, replacing the ones they had."""
        return self._call("PUT", "/me/notifications", json={"routes": [dict(r) for r in routes]})

    def list_warnings(self, incident_id: int) -> Any:
        return self._call("GET", "/warnings", params={"incident_id": incident_id})

    def draft_warning(self, incident_id: int, body: Mapping[str, Any] | None = None) -> Any:
        """``POST /incidents/{id}/warnings``: an empty body drafts the defaults from the incident."""
        return self._call("POST", f"/incidents/{incident_id}/warnings", json=dict(body or {}))

    def approve_warning(self, warning_id: int) -> Any:
        return self._call("POST", f"/warnings/{warning_id}/approve")

    # -- the wire --------------------------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        where = f"{method} {self._url}{API_PREFIX}{path}"
        try:
            response = self._session.request(method, self._base + path, timeout=self._timeout_s, **kwargs)
        except niquests.exceptions.Timeout as err:
            raise IocApiUnavailable(f"the IOC API did not answer within {self._timeout_s:g} s ({where}); "
                                    "raise IOC_API_TIMEOUT_S for a large import") from err
        except niquests.exceptions.RequestException as err:
            raise IocApiUnavailable(f"cannot reach the IOC API at {self._url} (IOC_API_URL): "
                                    f"{_reason(err)}") from err
        status = response.status_code or 0
        try:
            body = response.json()
        except (ValueError, niquests.exceptions.RequestException):
            body = None
        if 200 <= status < 300 and body is not None:
            return body
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            message, code = error["message"], str(error.get("code") or "")
            field = error.get("field") if isinstance(error.get("field"), str) else None
        else:
            message, code, field = f"answered HTTP {status} without an IOC API error body ({where})", None, None
        if status in (502, 503, 504) or status == 0:
            raise IocApiUnavailable(message, status=status, code=code, field=field)
        raise IocApiRefused(message, status=status, code=code, field=field)


def _reason(err: Exception) -> str:
    """The innermost reason of a connection failure, which says most ("Connection refused")."""
    inner: BaseException = err
    while inner.__cause__ is not None or inner.__context__ is not None:
        inner = inner.__cause__ or inner.__context__  # type: ignore[assignment]
    text = str(inner).strip() or type(inner).__name__
    return text.splitlines()[0]
