"""Operator-supplied JavaScript codecs run in QuickJS with a time and memory limit per call."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import quickjs

from ingest.codecs.errors import CodecLoadError
from ingest.codecs.result import DecodeResult

if TYPE_CHECKING:
    from ioc_core.settings import IngestSettings

__all__ = ["JS_ID_PREFIX", "JsCodec", "JsFlavour", "JsLimits", "js_codec_id"]

# JavaScript codec ids are "js:" + the file name without ".js"; the prefix keeps them apart from the
# built-in ids (which have no colon), so adding a built-in can never clash with an operator's file.
JS_ID_PREFIX = "js:"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Companion examples files, in order of preference: ours, then The Things Stack's "<name>-codec.yaml".
_EXAMPLE_SUFFIXES = (".yaml", ".yml", "-codec.yaml")


@dataclass(frozen=True, slots=True)
class JsLimits:
    """Per-call limits of the sandbox; a codec that exceeds one gets a fresh context for its next call."""

    time_limit_ms: int = 100
    memory_limit_mb: int = 32

    @classmethod
    def from_settings(cls, settings: IngestSettings) -> JsLimits:
        return cls(time_limit_ms=settings.js_time_limit_ms, memory_limit_mb=settings.js_memory_limit_mb)


class JsFlavour(StrEnum):
    """Which entry point a codec file defines; named after the JavaScript function."""

    DECODE_UPLINK = "decodeUplink"
    V3_DECODE = "Decode"
    TTN_V2_DECODER = "Decoder"

    @property
    def description(self) -> str:
        return _FLAVOUR_DESCRIPTIONS[self]


_FLAVOUR_DESCRIPTIONS = {
    JsFlavour.DECODE_UPLINK: "decodeUplink(input) (The Things Stack / ChirpStack v4)",
    JsFlavour.V3_DECODE: "Decode(fPort, bytes, variables) (ChirpStack v3)",
    JsFlavour.TTN_V2_DECODER: "Decoder(bytes, port) (The Things Network v2)",
}

# Evaluated before the codec so that the helpers keep the pristine JSON and Date even if a codec
# reassigns them. Codec functions are referenced by bare name at call time, which also finds
# top-level `let`/`const` declarations. Bytes arrive as a hex string: the binding passes strings as
# C strings, so a latin-1 string would be cut at the first 0x00 byte, and parsing JSON costs more.
_PRELUDE = r"""
var console = {log: function () {}, info: function () {}, warn: function () {}, error: function () {},
               debug: function () {}};
var __ioc_make = (function () {
  var stringify = JSON.stringify, parse = JSON.parse, JsDate = Date;
  var nonFinite = [];
  function replacer(key, value) {
    if (typeof value === 'number' && !isFinite(value)) { nonFinite.push(key); return null; }
    if (typeof value === 'bigint') { return Number(value); }
    return value;
  }
  function nibble(c) { return c < 58 ? c - 48 : c - 87; }
  function describe(err) {
    if (err instanceof Error) {
      var frame = typeof err.stack === 'string' ? err.stack.split('\n')[0].trim() : '';
      return String(err) + (frame ? ' (' + frame + ')' : '');
    }
    if (typeof err === 'string') { return err; }
    try { var text = stringify(err); if (text !== undefined) { return text; } } catch (ignored) {}
    return String(err);
  }
  var entries = {
    decodeUplink: function (b, p, t, v) {
      return decodeUplink({bytes: b, fPort: p, recvTime: new JsDate(t), variables: v});
    },
    Decode: function (b, p, t, v) { return Decode(p, b, v); },
    Decoder: function (b, p, t, v) { return Decoder(b, p); }
  };
  return function (flavour) {
    var entry = entries[flavour];
    return function (hex, fPort, millis, variablesJson) {
      var n = hex.length >> 1, bytes = new Array(n);
      for (var i = 0; i < n; i++) {
        bytes[i] = (nibble(hex.charCodeAt(2 * i)) << 4) | nibble(hex.charCodeAt(2 * i + 1));
      }
      var out, text;
      try {
        out = entry(bytes, fPort, millis, variablesJson ? parse(variablesJson) : {});
      } catch (err) {
        // Only what the codec threw lands here: QuickJS interrupts cannot be caught.
        return stringify({thrown: describe(err)});
      }
      nonFinite = [];
      try {
        text = stringify(out === undefined ? null : out, replacer);
      } catch (err) {
        return stringify({unserialisable: String(err)});
      }
      return '{"result":' + (text === undefined ? 'null' : text) +
        ',"nonFinite":' + stringify(nonFinite) + '}';
    };
  };
})();
"""
_DETECT = "typeof {name} === 'function'"


def js_codec_id(path: Path) -> str:
    """The registry id of the codec in ``path``: ``js:<file name without .js>``."""
    name = path.stem
    if not _NAME.match(name):
        raise CodecLoadError(f"{path}: a JavaScript codec file name must match [A-Za-z0-9][A-Za-z0-9._-]*.js")
    return JS_ID_PREFIX + name


@dataclass(slots=True)
class _Sandbox:
    context: quickjs.Context
    call: Any


class JsCodec:
    """A codec written in JavaScript for The Things Stack, ChirpStack v4 or ChirpStack v3.

    The source is compiled when the codec is built, so a syntax error fails at start-up. QuickJS
    runtimes must stay on the thread that made them, so each thread that decodes gets its own
    context, compiled on first use; a context that hit a limit is thrown away. The sandbox has only
    ECMAScript built-ins and a silent ``console``: no files, network, timers or modules.

    The binding measures the time limit in process CPU time (``clock()``), so CPU burnt by other
    threads at the same moment counts too: with several decoding threads a codec can be stopped early.
    """

    def __init__(
        self,
        codec_id: str,
        source: str,
        *,
        path: Path | None = None,
        limits: JsLimits | None = None,
    ) -> None:
        self._id = codec_id
        self._source = source
        self.path = path
        self.limits = limits or JsLimits()
        self._where = str(path) if path is not None else codec_id
        if "\x00" in source:
            raise CodecLoadError(f"{self._where}: the JavaScript source contains a NUL character")
        self._local = threading.local()
        sandbox, flavour = self._compile()
        self.flavour = flavour
        self._local.sandbox = sandbox

    @classmethod
    def load(cls, path: Path, *, limits: JsLimits | None = None, codec_id: str | None = None) -> JsCodec:
        try:
            source = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as err:
            raise CodecLoadError(f"cannot read JavaScript codec {path}: {err}") from err
        return cls(codec_id or js_codec_id(path), source, path=path, limits=limits)

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

        ``recv_time`` defaults to now, because codecs may call ``input.recvTime.getTime()``.
        """
        try:
            sandbox = self._sandbox()
        except CodecLoadError as err:
            return DecodeResult.failure(str(err))
        when = recv_time or datetime.now(UTC)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        variables_json = json.dumps(dict(variables)) if variables else ""
        try:
            raw = sandbox.call(payload.hex(), fport, when.timestamp() * 1000.0, variables_json)
        except quickjs.StackOverflow:
            self._reset()
            return self._stack_overflow()
        except quickjs.JSException as err:
            return self._js_failure(err)
        except Exception as err:  # the binding itself failed (e.g. a conversion); the context is suspect
            self._reset()
            return DecodeResult.failure(f"JS runtime failed: {type(err).__name__}: {err}")
        return self._result(raw)

    def _js_failure(self, err: quickjs.JSException) -> DecodeResult:
        # Exceptions the codec throws are caught inside the sandbox (see _PRELUDE); what reaches Python
        # is an interrupt, or an allocation failure that surfaces as "out of memory" or as "null" when
        # QuickJS could not even allocate the error object.
        message = _first_line(str(err))
        self._reset()
        if message.startswith("InternalError: interrupted"):
            return DecodeResult.failure(f"JS codec exceeded the time limit of {self.limits.time_limit_ms} ms")
        if message in ("", "null") or "out of memory" in message:
            return self._out_of_memory()
        if "stack overflow" in message:
            return self._stack_overflow()
        return DecodeResult.failure(f"JS error: {message}")

    def _thrown(self, message: str) -> DecodeResult:
        first = _first_line(message)
        if first.startswith("InternalError: out of memory"):
            self._reset()
            return self._out_of_memory()
        if first.startswith("InternalError: stack overflow"):
            self._reset()
            return self._stack_overflow()
        return DecodeResult.failure(f"JS error: {first}")

    def _out_of_memory(self) -> DecodeResult:
        return DecodeResult.failure(f"JS codec exceeded the memory limit of {self.limits.memory_limit_mb} MB")

    def _stack_overflow(self) -> DecodeResult:
        return DecodeResult.failure("JS codec exceeded the stack limit (runaway recursion)")

    def _result(self, raw: Any) -> DecodeResult:
        if not isinstance(raw, str):
            return DecodeResult.failure(f"JS runtime returned {type(raw).__name__}, expected a string")
        try:
            envelope = json.loads(raw)
        except ValueError as err:
            return DecodeResult.failure(f"JS runtime returned malformed JSON: {err}")
        if "thrown" in envelope:
            return self._thrown(str(envelope["thrown"]))
        if "unserialisable" in envelope:
            return DecodeResult.failure(
                f"{self.flavour.value} returned a value that is not JSON: "
                f"{_first_line(str(envelope['unserialisable']))}"
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

    def _sandbox(self) -> _Sandbox:
        sandbox: _Sandbox | None = getattr(self._local, "sandbox", None)
        if sandbox is None:
            sandbox, _ = self._compile()
            self._local.sandbox = sandbox
        return sandbox

    def _reset(self) -> None:
        # Drop the context: after an interrupt or an allocation failure its heap may be half-updated.
        self._local.sandbox = None

    def _compile(self) -> tuple[_Sandbox, JsFlavour]:
        context = quickjs.Context()
        context.set_memory_limit(self.limits.memory_limit_mb * 1024 * 1024)
        context.set_time_limit(self.limits.time_limit_ms / 1000.0)
        try:
            context.eval(_PRELUDE)
            # Taken before the codec runs, so a codec cannot replace it.
            make = context.get("__ioc_make")
            context.eval(self._source)
        except quickjs.StackOverflow as err:
            raise CodecLoadError(f"{self._where}: stack overflow while loading the codec") from err
        except quickjs.JSException as err:
            message = _first_line(str(err))
            if message.startswith("InternalError: interrupted"):
                message = f"top-level code exceeded the time limit of {self.limits.time_limit_ms} ms"
            elif message in ("", "null") or "out of memory" in message:
                message = f"top-level code exceeded the memory limit of {self.limits.memory_limit_mb} MB"
            raise CodecLoadError(f"{self._where}: JavaScript does not load: {message}") from err
        for flavour in JsFlavour:
            if context.eval(_DETECT.format(name=flavour.value)) is True:
                break
        else:
            raise CodecLoadError(
                f"{self._where}: defines none of decodeUplink(input) (The Things Stack / ChirpStack v4), "
                "Decode(fPort, bytes, variables) (ChirpStack v3) or Decoder(bytes, port) (TTN v2)"
            )
        call = make(flavour.value)
        return _Sandbox(context, call), flavour


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


def _first_line(text: str) -> str:
    stripped = text.strip()
    return stripped.splitlines()[0].strip() if stripped else ""
