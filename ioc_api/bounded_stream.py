"""A streamed answer that gives up on a client who stops reading, so what the stream holds (an export slot) is freed.

The server's ``send`` waits while the client's socket is full: a client that never reads would keep the response,
and the slot taken for it, for ever. Here each send may wait at most ``idle_timeout_s``, and the whole stream
at most ``send_timeout_s``; past either the stream ends where it is and the connection is closed (the client
sees a cut-off body, as after any network failure).
"""

from __future__ import annotations

import logging

import anyio
from starlette.responses import ContentStream, StreamingResponse
from starlette.types import Message, Receive, Scope, Send

__all__ = ["BoundedStream"]

log = logging.getLogger(__name__)


class BoundedStream(StreamingResponse):
    def __init__(self, content: ContentStream, *, idle_timeout_s: float, send_timeout_s: float,
                 media_type: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(content, media_type=media_type, headers=headers)
        self.idle_timeout_s = idle_timeout_s
        self.send_timeout_s = send_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        deadline = anyio.current_time() + self.send_timeout_s
        which = "idle"

        async def timed(message: Message) -> None:
            nonlocal which
            left = deadline - anyio.current_time()
            which = "idle" if self.idle_timeout_s <= left else "send"
            with anyio.fail_after(max(0.0, min(self.idle_timeout_s, left))):
                await send(message)

        try:
            await super().__call__(scope, receive, timed)
        except TimeoutError:
            limit = self.idle_timeout_s if which == "idle" else self.send_timeout_s
            log.warning("dropped a streamed answer to %s: %s", _client(scope),
                        f"the client read nothing for {limit:g} s" if which == "idle"
                        else f"sending took longer than {limit:g} s")


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "a client"
