"""The JavaScript worker process: decodes requests from its parent, one fresh QuickJS context per decode.

Run as ``python -m ingest.codecs.js_worker`` by ``JsPool``. It reads one JSON array per line on stdin and
answers each decode with one line on stdout:

    ["s", key, source, time_limit_ms, memory_limit_mb]   remember a codec (no answer)
    ["d", key, hex, fport, millis, variables_json]       decode; answers ["ok", envelope] or [failure, detail]

It exits when stdin closes, so it never outlives its parent. Nothing here is trusted by the parent: a
worker that stops answering is killed, one that dies is replaced.
"""

from __future__ import annotations

import json
import os
import select
import sys
from dataclasses import dataclass

from ingest.codecs.js_sandbox import LoadFailed, Sandbox, call, compile_codec

__all__ = ["main"]


@dataclass(frozen=True, slots=True)
class _Spec:
    source: str
    time_limit_ms: int
    memory_limit_mb: int

    def compile(self) -> Sandbox:
        return compile_codec(self.source, time_limit_ms=self.time_limit_ms, memory_limit_mb=self.memory_limit_mb)


class _Lines:
    """Lines from a file descriptor, with a way to ask whether another one is already waiting."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()

    def pending(self) -> bool:
        if b"\n" in self._buffer:
            return True
        return bool(select.select([self._fd], [], [], 0)[0])

    def next(self) -> bytes | None:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line
            chunk = os.read(self._fd, 1 << 16)
            if not chunk:
                return None
            self._buffer += chunk


def main() -> None:
    specs: dict[str, _Spec] = {}
    # A context built while the worker had nothing to do, for the codec it ran last: each decode still
    # gets a context no other decode has touched, but building it is off the critical path.
    spare: tuple[str, Sandbox] | None = None
    lines = _Lines(sys.stdin.fileno())
    out = sys.stdout.buffer
    # The parent times decodes from the moment it asks; it waits for this line before the first one, so
    # the interpreter's start-up never counts against a codec.
    out.write(b'["ready"]\n')
    out.flush()
    while True:
        line = lines.next()
        if line is None:
            return
        request = json.loads(line)
        if request[0] == "s":
            specs[request[1]] = _Spec(request[2], int(request[3]), int(request[4]))
            continue
        key, hex_payload, fport, millis, variables_json = request[1:6]
        if spare is not None and spare[0] == key:
            sandbox: Sandbox | None = spare[1]
            spare = None
            answer: list[str] = []
        else:
            sandbox, answer = _compile(specs[key])
        if sandbox is not None:
            outcome = call(sandbox, hex_payload, fport, millis, variables_json)
            answer = ["ok", outcome] if isinstance(outcome, str) else list(outcome)
            del sandbox  # the context is freed before the next one is built
        out.write(json.dumps(answer).encode() + b"\n")
        out.flush()
        if not lines.pending():
            built, _ = _compile(specs[key])
            spare = None if built is None else (key, built)


def _compile(spec: _Spec) -> tuple[Sandbox | None, list[str]]:
    try:
        return spec.compile(), []
    except LoadFailed as err:
        # The parent loaded this source once already; top-level code can still fail here (it may read
        # the clock or Math.random), and the decode then fails with the same words.
        return None, [err.failure or "load", str(err)]


if __name__ == "__main__":
    main()
