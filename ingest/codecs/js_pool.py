"""A small pool of JavaScript worker processes; a decode that overruns its wall-clock deadline is killed.

QuickJS checks its time limit only between bytecodes, so a codec stuck inside a native built-in (a
backtracking regular expression, a sort or a join of millions of items) cannot be interrupted from inside.
Each decode therefore runs in a worker process (``ingest.codecs.js_worker``) and the caller waits for the
answer with a deadline of the time limit plus a grace; a worker that misses it is killed with SIGKILL and
a new one is started in its place. Workers start on first use, never at import or at codec discovery.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ingest.codecs.js_worker import take_line

__all__ = ["JsCall", "JsPool", "Outcome", "OutcomeKind"]

# ok: the prelude's envelope; time/memory/stack: a QuickJS limit stopped the call; killed: the deadline
# passed and the worker was killed; crashed: the worker died; runtime/load: the binding failed or the
# codec's top-level code failed in the worker.
OutcomeKind = Literal["ok", "time", "memory", "stack", "runtime", "load", "killed", "crashed"]
_KINDS: frozenset[str] = frozenset(("ok", "time", "memory", "stack", "runtime", "load"))
# Interpreter start-up plus importing quickjs; generous, because a loaded machine starts processes slowly.
_START_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class JsCall:
    """One decode: which codec (its key names source and limits), and the prelude's arguments."""

    key: str
    source: str
    time_limit_ms: int
    memory_limit_mb: int
    hex_payload: str
    fport: int
    millis: float
    variables_json: str


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: OutcomeKind
    text: str  # the envelope when ok, else a detail for the message


class _Gone(Exception):
    """The worker process closed its end: it died or was killed."""


class _Worker:
    def __init__(self) -> None:
        env = dict(os.environ)
        # The worker imports ingest.codecs.js_sandbox from the same tree as its parent, installed or not.
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ingest.codecs.js_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            env=env,
            # Out of the terminal's process group: Ctrl+C is for the ingest, which then drains.
            start_new_session=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in = self.proc.stdin.fileno()
        self._out = self.proc.stdout.fileno()
        self._poll = select.poll()
        self._poll.register(self._out, select.POLLIN)
        self._buffer = bytearray()
        self.ready = False
        self.known: set[str] = set()

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._in, view) :]
        except OSError as err:  # BrokenPipeError: the worker is gone
            raise _Gone(str(err)) from err

    def receive(self, deadline: float) -> bytes | None:
        """The next line, or None when ``deadline`` (monotonic) passes first."""
        while True:
            line = take_line(self._buffer)
            if line is not None:
                return line
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._poll.poll(max(1, int(remaining * 1000) + 1)):
                if time.monotonic() >= deadline:
                    return None
                continue
            chunk = os.read(self._out, 1 << 16)
            if not chunk:
                raise _Gone("closed its output")
            self._buffer += chunk

    def exit_status(self) -> str:
        try:
            code = self.proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            return "did not exit"
        return f"killed by signal {-code}" if code < 0 else f"exited with code {code}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


def _stop_all(workers: set[_Worker]) -> None:
    for worker in list(workers):
        worker.stop()
    workers.clear()


class JsPool:
    """Up to ``size`` worker processes shared by every JavaScript codec of a library; thread-safe."""

    def __init__(self, size: int = 1, *, kill_grace_ms: int = 150) -> None:
        if size < 1:
            raise ValueError("a JavaScript pool needs at least one worker")
        self.size = size
        self.kill_grace_ms = kill_grace_ms
        self.started = 0
        self.killed = 0
        self.crashed = 0
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._closed = False
        self._available = threading.Condition()
        # Workers are processes: stop them when the pool is closed, collected or the interpreter exits.
        self._finalizer = weakref.finalize(self, _stop_all, self._all)

    def run(self, call: JsCall) -> Outcome:
        """Decode in a worker; waits for one when all are busy. Never raises on what the codec does.

        Raises ``OSError`` when no worker process can be started, ``RuntimeError`` after ``close()``.
        """
        worker = self._checkout()
        healthy = False
        try:
            outcome = self._ask(worker, call)
            healthy = outcome.kind not in ("killed", "crashed")
            return outcome
        finally:
            self._checkin(worker, healthy)

    def close(self) -> None:
        with self._available:
            self._closed = True
            self._idle.clear()
            self._available.notify_all()
        self._finalizer()

    def __enter__(self) -> JsPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ask(self, worker: _Worker, call: JsCall) -> Outcome:
        try:
            if not worker.ready:
                if worker.receive(time.monotonic() + _START_TIMEOUT_S) != b'["ready"]':
                    return self._lost(worker, "crashed", f"did not start ({worker.exit_status()})")
                worker.ready = True
            message = b""
            if call.key not in worker.known:
                message = _line(["s", call.key, call.source, call.time_limit_ms, call.memory_limit_mb])
                worker.known.add(call.key)
            message += _line(["d", call.key, call.hex_payload, call.fport, call.millis, call.variables_json])
            # The deadline starts once the request is written, so a long source does not count.
            worker.send(message)
            deadline = time.monotonic() + (call.time_limit_ms + self.kill_grace_ms) / 1000.0
            line = worker.receive(deadline)
        except _Gone:
            return self._lost(worker, "crashed", worker.exit_status())
        if line is None:
            return self._lost(worker, "killed", "")
        try:
            answer = json.loads(line)
            kind, text = str(answer[0]), str(answer[1])
        except (ValueError, IndexError, KeyError, TypeError):
            answer = None
        if answer is None or kind not in _KINDS:
            # Out of step with its parent: nothing it says next can be trusted.
            return self._lost(worker, "crashed", f"answered {line[:80]!r}")
        return Outcome(kind, text)  # type: ignore[arg-type]  # checked against _KINDS

    def _lost(self, worker: _Worker, kind: Literal["killed", "crashed"], detail: str) -> Outcome:
        worker.stop()
        with self._available:
            if kind == "killed":
                self.killed += 1
            else:
                self.crashed += 1
        return Outcome(kind, detail)

    def _checkout(self) -> _Worker:
        with self._available:
            while True:
                if self._closed:
                    raise RuntimeError("the JavaScript pool is closed")
                if self._idle:
                    return self._idle.pop()
                if len(self._all) < self.size:
                    worker = _Worker()
                    self._all.add(worker)
                    self.started += 1
                    return worker
                self._available.wait()

    def _checkin(self, worker: _Worker, healthy: bool) -> None:
        with self._available:
            if not healthy or self._closed:
                self._all.discard(worker)
                if not self._closed:
                    # Replace it now: the new interpreter starts while the caller goes on. If that fails
                    # (no memory, no file descriptors), the next checkout tries again.
                    try:
                        replacement = _Worker()
                    except OSError:
                        pass
                    else:
                        self._all.add(replacement)
                        self.started += 1
                        self._idle.append(replacement)
            else:
                # Last in, first out: a steady trickle keeps using one warm worker and its stock of contexts.
                self._idle.append(worker)
            self._available.notify()
        if not healthy or self._closed:
            worker.stop()


def _line(request: list[object]) -> bytes:
    return json.dumps(request, separators=(",", ":")).encode() + b"\n"

