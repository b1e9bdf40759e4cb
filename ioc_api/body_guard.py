"""The body guard: a request that carries a body is authenticated first, and its body is counted as it streams in.

FastAPI reads and parses a route's body before it resolves the route's dependencies, so without this a caller
with no key could make the API hold and parse any amount of JSON before hearing 401. The guard is pure ASGI and
runs before routing:

- a request under ``/api/v1`` with a body (a ``Content-Length`` above 0, or a ``Transfer-Encoding``) is
  authenticated from its ``Authorization`` header before one byte of the body is read; the caller is left in the
  scope for the route's key dependency, so the key is looked up once;
- a declared ``Content-Length`` past the route's limit is refused at once; otherwise the bytes are counted as the
  route reads them, and reading stops at the first byte past the limit (413);
- a body whose next part does not arrive within ``timeout_s`` is refused with 408, so a client trickling a body
  cannot keep a worker waiting.

Every refusal has the API's error shape. Starlette's ``RequestBodyLimitMiddleware`` (which FastAPI's
``max_body_size`` uses) counts the same way, but answers a declared oversize in plain text, takes its limits when
routes are declared (at import, not from settings) and cannot authenticate first; hence this module.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import anyio
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ioc_api.errors import ApiError, BodyTimeout, TooLarge, response
from ioc_core.errors import IocError

__all__ = ["CALLER_SCOPE_KEY", "BodyGuard", "BodyLimits"]

CALLER_SCOPE_KEY = "ioc.caller"
"""Where the guard leaves the authenticated caller for ``deps._caller``."""

@dataclass(frozen=True, slots=True)
class BodyLimits:
    """Bytes a request body may have: ``paths`` maps a route's exact path to its own limit."""

    default: int
    paths: Mapping[str, int]
    timeout_s: float

    def for_path(self, path: str) -> int:
        return self.paths.get(path, self.default)


class BodyGuard:
    """ASGI middleware; ``authenticate`` turns an ``Authorization`` header into a caller or raises an error the
    API answers (``ioc_api.errors``): Unauthorized, or DatabaseUnavailable."""

    def __init__(self, app: ASGIApp, *, limits: BodyLimits, prefix: str,
                 authenticate: Callable[[str | None], Awaitable[object]], retry_after_s: int) -> None:
        self.app = app
        self.limits = limits
        self.prefix = prefix
        self.authenticate = authenticate
        self.retry_after_s = retry_after_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = _length(headers.get("content-length"))
        if declared == 0 or (declared is None and "transfer-encoding" not in headers):
            await self.app(scope, receive, send)
            return
        limit = self.limits.for_path(scope["path"])
        if declared == -1:
            await _answer(send, scope, ApiError("Content-Length is not a number", field="body"), self.retry_after_s)
            return
        if scope["path"].startswith(self.prefix):
            try:
                scope[CALLER_SCOPE_KEY] = await self.authenticate(headers.get("authorization"))
            except IocError as err:
                await _answer(send, scope, err, self.retry_after_s)
                return
        if declared is not None and declared > limit:
            await _answer(send, scope, _too_large(limit), self.retry_after_s)
            return
        await _Counted(self.app, limit, self.limits.timeout_s, self.retry_after_s)(scope, receive, send)


class _Counted:
    """One request whose body is counted and timed; a refusal replaces whatever the route was about to answer."""

    def __init__(self, app: ASGIApp, limit: int, timeout_s: float, retry_after_s: int) -> None:
        self.app = app
        self.limit = limit
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self.read = 0
        self.body_done = False
        self.refusal: ApiError | None = None
        self.started = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted() -> Message:
            if self.refusal is not None:
                raise self.refusal
            if self.body_done:  # only the disconnect is left to wait for, which may take the whole response
                return await receive()
            try:
                with anyio.fail_after(self.timeout_s):
                    message = await receive()
            except TimeoutError:
                self.refusal = BodyTimeout(f"no part of the request body arrived for {self.timeout_s:g} s",
                                           field="body")
                raise self.refusal from None
            if message["type"] == "http.request":
                self.read += len(message.get("body", b""))
                if self.read > self.limit:
                    self.refusal = _too_large(self.limit)
                    raise self.refusal
                self.body_done = not message.get("more_body", False)
            return message

        async def guarded_send(message: Message) -> None:
            if self.refusal is not None:
                # The route turned the stopped read into an answer of its own (FastAPI makes it a 400): ours wins.
                if not self.started:
                    self.started = True
                    await _answer(send, scope, self.refusal, self.retry_after_s)
                return
            if message["type"] == "http.response.start":
                self.started = True
            await send(message)

        # The refusal is raised out of ``receive`` to stop the route reading; when the route does not turn it
        # into an answer of its own (which guarded_send replaces), it arrives here and is answered.
        try:
            await self.app(scope, counted, guarded_send)
        except ApiError as error:
            if error is not self.refusal:
                raise
            if not self.started:
                self.started = True
                await _answer(send, scope, error, self.retry_after_s)


async def _answer(send: Send, scope: Scope, error: IocError, retry_after_s: int) -> None:
    async def nothing() -> Message:
        return {"type": "http.disconnect"}

    reply = response(error, retry_after_s=retry_after_s)
    if reply is None:  # not an error the API answers: a bug, which the server answers with 500
        raise error
    await reply(scope, nothing, send)


def _too_large(limit: int) -> TooLarge:
    return TooLarge(f"the request body is larger than this route's limit of {limit:,} bytes", field="body")


def _length(value: str | None) -> int | None:
    """The declared length; None when not declared, -1 when it is not a number."""
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        return -1
    return length if length >= 0 else -1
