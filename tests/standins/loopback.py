"""A loopback HTTP server for the notification stand-ins: each request goes to ``answer``, served on threads."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["LoopbackServer", "Request"]


class Request:
    """One request as it arrived: path, headers (case-insensitive look-up) and raw body."""

    def __init__(self, path: str, headers: Mapping[str, str], body: bytes) -> None:
        self.path = path
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


class LoopbackServer:
    """Serves POSTs on ``127.0.0.1`` and a free port; subclasses answer them (status, JSON body, headers)."""

    def __init__(self) -> None:
        self.url = ""
        self.lock = threading.Lock()
        self.delay_s = 0.0  # every answer waits this long after the request was recorded
        self._failures: list[int] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def fail_next(self, *statuses: int) -> None:
        """Answer the next requests with these statuses (a 5xx, a 429) before looking at them."""
        with self.lock:
            self._failures.extend(statuses)

    def answer(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        raise NotImplementedError

    def _serve(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            return failure, {"message": "stand-in failure"}, {"Retry-After": "1"} if failure == 429 else {}
        return self.answer(request)

    def start(self) -> str:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(self.path, dict(self.headers.items()), self.rfile.read(length))
                status, body, headers = owner._serve(request)
                if owner.delay_s:
                    threading.Event().wait(owner.delay_s)
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> Any:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
