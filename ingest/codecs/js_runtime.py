"""Operator-supplied JavaScript codecs: QuickJS in worker processes, a fresh context per decode, a breaker.

Every decode runs in a pool of worker processes (``js_pool``) in a context built for that decode alone,
so nothing a codec does (globals, changed prototypes, a stuck native built-in, a crash) reaches the next
uplink or another device. Timeouts, crashes and memory exhaustion count towards the codec's circuit
breaker (``breaker``); the decode result names each of them. See docs/codecs-javascript.md.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.codecs.breaker import BreakerPolicy, CircuitBreaker, CodecHealth
from ingest.codecs.errors import CodecLoadError
from ingest.codecs.js_pool import JsCall, JsPool, Outcome
from ingest.codecs.js_sandbox import JsFlavour, LoadFailed, compile_codec, first_line
from ingest.codecs.result import DecodeResult

if TYPE_CHECKING:
    from ioc_core.settings import IngestSettings

__all__ = ["JS_ID_PREFIX", "JsCodec", "JsFlavour", "JsLimits", "JsRuntime", "js_codec_id"]

# JavaScript codec ids are "js:" + the file name without ".js"; the prefix keeps them apart from the
# built-in ids (which have no colon), so adding a built-in can never clash with an operator's file.
JS_ID_PREFIX = "js:"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Companion examples files, in order of preference: ours, then The Things Stack's "<name>-codec.yaml".
_EXAMPLE_SUFFIXES = (".yaml", ".yml", "-codec.yaml")


@dataclass(frozen=True, slots=True)
class JsLimits:
    """Limits of the JavaScript runtime: per decode (time, memory), on its processes, and on failures.

    ``time_limit_ms`` is QuickJS's own interrupt (CPU time, checked between bytecodes); a decode still
    running ``kill_grace_ms`` after it (wall clock) has its worker killed. ``workers`` caps the pool. A
    codec is disabled for ``breaker_cooldown_s`` after ``breaker_failures`` timeouts, crashes or memory
    exhaustions within ``breaker_window_s``.
    """

    time_limit_ms: int = 100
    memory_limit_mb: int = 32
    workers: int = 2
    kill_grace_ms: int = 150
    breaker_failures: int = 5
    breaker_window_s: float = 60.0
    breaker_cooldown_s: float = 300.0

    @classmethod
    def from_settings(cls, settings: IngestSettings) -> JsLimits:
        return cls(
            time_limit_ms=settings.js_time_limit_ms,
            memory_limit_mb=settings.js_memory_limit_mb,
            workers=settings.js_workers,
            kill_grace_ms=settings.js_kill_grace_ms,
            breaker_failures=settings.js_breaker_failures,
            breaker_window_s=settings.js_breaker_window_s,
            breaker_cooldown_s=settings.js_breaker_cooldown_s,
        )

    @property
    def breaker(self) -> BreakerPolicy:
        return BreakerPolicy(self.breaker_failures, self.breaker_window_s, self.breaker_cooldown_s)


class JsRuntime:
    """What the JavaScript codecs of one library share: the worker pool and the health counters.

    Nothing starts until the first decode; ``close()`` stops the workers (they also stop by themselves
    when this process exits, because their input closes). ``health`` is given by tests that set its clocks.
    """

    def __init__(self, limits: JsLimits | None = None, *, health: CodecHealth | None = None) -> None:
        self.limits = limits or JsLimits()
        self.pool = JsPool(self.limits.workers, kill_grace_ms=self.limits.kill_grace_ms)
        self.health = health or CodecHealth(self.limits.breaker)
        self._threads: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def decode_ahead(self, jobs: Sequence[tuple[JsCodec, bytes, int, datetime | None]]) -> None:
        """Decode ``jobs`` now, spread over the workers; each codec keeps its results for ``decode``.

        The caller's decodes are sequential, so one worker would do all the work while the others wait;
        handing a batch's JavaScript decodes to as many threads as there are workers keeps them all
        busy (each thread mostly waits on its worker's pipe, without the GIL). Results are kept until
        the next call, so what the caller ends up not asking for does not pile up.
        """
        if self.limits.workers < 2 or len(jobs) < 2:
            return
        codecs = {id(job[0]): job[0] for job in jobs}
        for codec in codecs.values():
            codec._ahead.clear()
        with self._lock:
            if self._threads is None:
                self._threads = ThreadPoolExecutor(self.limits.workers, thread_name_prefix="ioc-js")
            threads = self._threads
        results = threads.map(_run_quietly, jobs)
        for (codec, payload, fport, when), result in zip(jobs, results, strict=True):
            if result is not None:
                codec._ahead[(payload, fport, when)] = result

    def close(self) -> None:
        with self._lock:
            threads, self._threads = self._threads, None
        if threads is not None:
            threads.shutdown(wait=True)
        self.pool.close()


def _run_quietly(job: tuple[JsCodec, bytes, int, datetime | None]) -> DecodeResult | None:
    """One decode ahead; None when it raised (a bug), so the decode in line runs it and reports it."""
    codec, payload, fport, when = job
    try:
        return codec._run(payload, fport, when, None)
    except Exception:
        return None


def js_codec_id(path: Path) -> str:
    """The library id of the codec in ``path``: ``js:<file name without .js>``."""
    name = path.stem
    if not _NAME.match(name):
        raise CodecLoadError(f"{path}: a JavaScript codec file name must match [A-Za-z0-9][A-Za-z0-9._-]*.js")
    return JS_ID_PREFIX + name


class JsCodec:
    """A codec written in JavaScript for The Things Stack, ChirpStack v4 or ChirpStack v3.

    The source is compiled once here, so a syntax error fails at start-up (top-level code runs under
    the time and memory limits, in this process). Decodes run in the runtime's worker processes, each
    in a fresh context. The sandbox has only ECMAScript built-ins and a silent ``console``: no files,
    network, timers or modules. Without a ``runtime`` the codec makes its own, with one worker.
    """

    def __init__(
        self,
        codec_id: str,
        source: str,
        *,
        path: Path | None = None,
        limits: JsLimits | None = None,
        runtime: JsRuntime | None = None,
    ) -> None:
        self._id = codec_id
        self._source = source
        self.path = path
        self.runtime = runtime or JsRuntime(limits or JsLimits(workers=1))
        self.limits = limits or self.runtime.limits
        self._where = str(path) if path is not None else codec_id
        if "\x00" in source:
            raise CodecLoadError(f"{self._where}: the JavaScript source contains a NUL character")
        try:
            sandbox = compile_codec(
                source, time_limit_ms=self.limits.time_limit_ms, memory_limit_mb=self.limits.memory_limit_mb
            )
        except LoadFailed as err:
            raise CodecLoadError(f"{self._where}: {_load_message(err)}") from err
        self.flavour = sandbox.flavour
        del sandbox
        # Workers remember codecs by this key: the same id with other source or limits is another codec.
        digest = hashlib.sha256(
            f"{self.limits.time_limit_ms}/{self.limits.memory_limit_mb}/{source}".encode()
        ).hexdigest()[:16]
        self._key = f"{codec_id}#{digest}"
        self.breaker: CircuitBreaker = self.runtime.health.breaker(codec_id)
        self._ahead: dict[tuple[bytes, int, datetime | None], DecodeResult] = {}

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        limits: JsLimits | None = None,
        codec_id: str | None = None,
        runtime: JsRuntime | None = None,
    ) -> JsCodec:
        try:
            source = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as err:
            raise CodecLoadError(f"cannot read JavaScript codec {path}: {err}") from err
        return cls(codec_id or js_codec_id(path), source, path=path, limits=limits, runtime=runtime)

    @property
    def id(self) -> str:
        return self._id

    @property
    def examples_path(self) -> Path | None:
        """The device-repository examples beside the file (``<name>.yaml``), if there are any."""
        if self.path is None:
            return None
        for suffix in _EXAMPLE_SUFFIXES:
            candidate = self.path.with_name(self.path.stem + suffix)
            if candidate.is_file():
                return candidate
        return None

    def __repr__(self) -> str:
        return f"JsCodec({self._id!r}, flavour={self.flavour.value!r})"

    def decode(
        self,
        payload: bytes,
        fport: int,
        *,
        recv_time: datetime | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> DecodeResult:
        """Run the codec on one payload; every failure comes back as ``errors``, never as an exception.

        ``recv_time`` defaults to now, because codecs may call ``input.recvTime.getTime()``. A result
        ``JsRuntime.decode_ahead`` made for the same payload, port and time is handed out once.
        """
        if self._ahead and variables is None:
            kept = self._ahead.pop((payload, fport, recv_time), None)
            if kept is not None:
                return kept
        return self._run(payload, fport, recv_time, variables)

    def _run(
        self, payload: bytes, fport: int, recv_time: datetime | None, variables: Mapping[str, str] | None
    ) -> DecodeResult:
        refusal = self.breaker.refusal()
        if refusal is not None:
            return DecodeResult.failure(refusal)
        when = recv_time or datetime.now(UTC)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        call = JsCall(
            self._key, self._source, self.limits.time_limit_ms, self.limits.memory_limit_mb,
            payload.hex(), fport, when.timestamp() * 1000.0, json.dumps(dict(variables)) if variables else "",
        )
        try:
            outcome = self.runtime.pool.run(call)
        except (OSError, RuntimeError) as err:  # no worker could be started, or the runtime was closed
            outcome = Outcome("runtime", f"no JavaScript worker: {type(err).__name__}: {err}")
        except BaseException:
            # A bug here must not leave a breaker's trial open for ever (its codec refused for good).
            self.breaker.failed("crash")
            raise
        if outcome.kind == "ok":
            self.breaker.succeeded()
            return self._result(outcome.text)
        return self._failure(outcome)

    def _failure(self, outcome: Outcome) -> DecodeResult:
        limits = self.limits
        if outcome.kind == "time":
            self.breaker.failed("timeout")
            return DecodeResult.failure(f"codec timed out after {limits.time_limit_ms} ms")
        if outcome.kind == "killed":
            self.breaker.failed("timeout")
            return DecodeResult.failure(
                f"codec timed out after {limits.time_limit_ms} ms (stuck in a built-in; its worker was killed "
                f"after {limits.time_limit_ms + limits.kill_grace_ms} ms)"
            )
        if outcome.kind == "memory":
            self.breaker.failed("memory")
            return DecodeResult.failure(f"codec ran out of memory (limit {limits.memory_limit_mb} MB)")
        if outcome.kind == "stack":
            self.breaker.failed("crash")
            return DecodeResult.failure("codec exceeded the stack limit (runaway recursion)")
        if outcome.kind == "crashed":
            self.breaker.failed("crash")
            return DecodeResult.failure(f"codec crashed its worker ({outcome.text})")
        if outcome.kind == "load":
            self.breaker.failed("crash")
            return DecodeResult.failure(f"codec does not load in the worker: {outcome.text}")
        self.breaker.failed("crash")
        return DecodeResult.failure(f"JS runtime failed: {outcome.text}")

    def _result(self, raw: str) -> DecodeResult:
        try:
            envelope = json.loads(raw)
        except ValueError as err:
            return DecodeResult.failure(f"JS runtime returned malformed JSON: {err}")
        if "thrown" in envelope:
            return DecodeResult.failure(f"JS error: {first_line(str(envelope['thrown']))}")
        if "unserialisable" in envelope:
            return DecodeResult.failure(
                f"{self.flavour.value} returned a value that is not JSON: "
                f"{first_line(str(envelope['unserialisable']))}"
            )
        warnings = [
            f"non-finite number in field {key!r} became null" for key in envelope.get("nonFinite", [])
        ]
        out = envelope.get("result")
        if self.flavour is JsFlavour.DECODE_UPLINK:
            return _uplink_result(out, warnings)
        if not isinstance(out, dict):
            return DecodeResult.failure(
                f"{self.flavour.value} returned {_kind(out)}, expected an object", data={}
            )
        return DecodeResult(data=out, warnings=tuple(warnings))


def _load_message(err: LoadFailed) -> str:
    if err.failure in ("time", "memory"):
        return f"JavaScript does not load: {err}"
    return str(err)


def _uplink_result(out: Any, warnings: list[str]) -> DecodeResult:
    if not isinstance(out, dict):
        return DecodeResult.failure(f"decodeUplink returned {_kind(out)}, expected an object")
    warnings = _strings(out.get("warnings")) + warnings
    errors = _strings(out.get("errors"))
    data = out.get("data")
    if errors:
        return DecodeResult(
            data=data if isinstance(data, dict) else {}, warnings=tuple(warnings), errors=tuple(errors)
        )
    if data is None:
        return DecodeResult(data={}, warnings=tuple(warnings), errors=("decodeUplink did not return 'data'",))
    if not isinstance(data, dict):
        return DecodeResult(
            data={},
            warnings=tuple(warnings),
            errors=(f"decodeUplink returned 'data' as {_kind(data)}, expected an object",),
        )
    return DecodeResult(data=data, warnings=tuple(warnings))


def _strings(value: Any) -> list[str]:
    """Codecs return errors and warnings as a list of strings; tolerate a bare string or other items."""
    if value is None:
        return []
    if isinstance(value, list):
        return [item if isinstance(item, str) else json.dumps(item) for item in value]
    return [value if isinstance(value, str) else json.dumps(value)]


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
