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
import signal
import sys
from collections import OrderedDict
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



def take_line(buffer: bytearray) -> bytes | None:
    """The first whole line in ``buffer`` without its newline, removed from it; None when there is none yet.
    Both ends of the pipe (this worker and ``js_pool``) frame their messages this way."""
    end = buffer.find(b"\n")
    if end < 0:
        return None
    line = bytes(buffer[:end])
    del buffer[: end + 1]
    return line

class _Lines:
    """Lines from a file descriptor, with a way to ask whether another one is already waiting."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()

    def pending(self, wait_s: float = 0.0) -> bool:
        """Whether a line is waiting, or arrives within ``wait_s``."""
        if b"\n" in self._buffer:
            return True
        return bool(select.select([self._fd], [], [], wait_s)[0])

    def next(self) -> bytes | None:
        while True:
            line = take_line(self._buffer)
            if line is not None:
                return line
            chunk = os.read(self._fd, 1 << 16)
            if not chunk:
                return None
            self._buffer += chunk


# Contexts are built ahead and freed afterwards while the worker waits for work: a burst of up to STOCK
# decodes of a codec then costs only the call, and building (~0.3 ms) and freeing (~0.3 ms) each context
# move off the ingest's critical path. Stock is kept for the codecs used last, and at most TRASH used
# contexts wait to be freed (each context is ~100 kB: all of them stay under 15 MB).
STOCK = 16
STOCKED_CODECS = 4
TRASH = 64
QUIET_S = 0.002


def main() -> None:
    # Stopping is the parent's decision: Ctrl+C in a terminal or systemd's SIGTERM to the whole group must
    # not kill a worker in the middle of the parent's drain (those uplinks would read "codec crashed").
    # The worker ends when its input closes, which happens when the parent exits, however it exits.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    specs: dict[str, _Spec] = {}
    # Most recently used codec last. Each context in it has never run a decode: every decode still gets
    # a context of its own, as if it had been built on the spot.
    stock: OrderedDict[str, list[Sandbox]] = OrderedDict()
    used: list[Sandbox] = []
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
        ready = stock.setdefault(key, [])
        stock.move_to_end(key)
        while len(stock) > STOCKED_CODECS:
            stock.popitem(last=False)
        answer: list[str] = []
        sandbox: Sandbox | None
        if ready:
            sandbox = ready.pop()
        else:
            sandbox, answer = _compile(specs[key])
        if sandbox is not None:
            outcome = call(sandbox, hex_payload, fport, millis, variables_json)
            answer = ["ok", outcome] if isinstance(outcome, str) else list(outcome)
            used.append(sandbox)
            del sandbox
        out.write(json.dumps(answer).encode() + b"\n")
        out.flush()
        if len(used) > TRASH:
            del used[0]
        _tidy(stock, used, specs, lines)


def _tidy(stock: OrderedDict[str, list[Sandbox]], used: list[Sandbox], specs: dict[str, _Spec],
          lines: _Lines) -> None:
    """Free used contexts, then build new ones (the newest codec first), until a request arrives.

    This starts only after a short quiet spell: the requests of a batch follow each other within tens of
    microseconds, and none of them should wait behind a context being freed or built for later.
    """
    if lines.pending(QUIET_S):
        return
    while used:
        used.pop()
        if lines.pending():
            return
    for key in reversed(stock):
        ready = stock[key]
        while len(ready) < STOCK:
            if lines.pending():
                return
            built, _ = _compile(specs[key])
            if built is None:
                break  # its top-level code fails: the next decode reports why
            ready.append(built)


def _compile(spec: _Spec) -> tuple[Sandbox | None, list[str]]:
    try:
        return spec.compile(), []
    except LoadFailed as err:
        # The parent loaded this source once already; top-level code can still fail here (it may read
        # the clock or Math.random), and the decode then fails with the same words.
        return None, [err.failure or "load", str(err)]


if __name__ == "__main__":
    main()
