"""One QuickJS context holding one codec: the prelude, compiling, calling, and sorting what went wrong.

Imported by the worker processes, so it needs nothing but the standard library and ``quickjs``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

import quickjs

__all__ = ["Failure", "JsFlavour", "LoadFailed", "Sandbox", "call", "compile_codec", "first_line"]


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

# What stopped a call, when it did not return: the sandbox's limits, or something else the binding raised.
Failure = Literal["time", "memory", "stack", "runtime"]


class LoadFailed(Exception):
    """The codec's source does not compile, its top-level code fails, or it defines no entry point."""

    def __init__(self, message: str, failure: Failure | None = None) -> None:
        super().__init__(message)
        self.failure = failure


@dataclass(slots=True)
class Sandbox:
    """A context with the prelude and the codec evaluated, and the prelude's wrapper for its entry point."""

    context: quickjs.Context
    entry: Any
    flavour: JsFlavour


def compile_codec(source: str, *, time_limit_ms: int, memory_limit_mb: int) -> Sandbox:
    """A fresh context running ``source``; raises ``LoadFailed`` with a one-line reason."""
    context = quickjs.Context()
    context.set_memory_limit(memory_limit_mb * 1024 * 1024)
    context.set_time_limit(time_limit_ms / 1000.0)
    try:
        context.eval(_PRELUDE)
        # Taken before the codec runs, so a codec cannot replace it.
        make = context.get("__ioc_make")
        context.eval(source)
    except quickjs.StackOverflow as err:
        raise LoadFailed("stack overflow while loading the codec", "stack") from err
    except quickjs.JSException as err:
        failure = _failure(first_line(str(err)))
        if failure == "time":
            raise LoadFailed(f"top-level code exceeded the time limit of {time_limit_ms} ms", failure) from err
        if failure == "memory":
            raise LoadFailed(f"top-level code exceeded the memory limit of {memory_limit_mb} MB", failure) from err
        raise LoadFailed(f"JavaScript does not load: {first_line(str(err))}") from err
    for flavour in JsFlavour:
        if context.eval(_DETECT.format(name=flavour.value)) is True:
            break
    else:
        raise LoadFailed(
            "defines none of decodeUplink(input) (The Things Stack / ChirpStack v4), "
            "Decode(fPort, bytes, variables) (ChirpStack v3) or Decoder(bytes, port) (TTN v2)"
        )
    return Sandbox(context, make(flavour.value), flavour)


def call(
    sandbox: Sandbox, hex_payload: str, fport: int, millis: float, variables_json: str
) -> str | tuple[Failure, str]:
    """The prelude's JSON envelope, or what stopped the call and the binding's first line about it.

    The envelope's ``thrown`` is what the codec threw. An allocation failure that QuickJS reports as a
    thrown value (``InternalError: out of memory``, or ``null`` when even the error object could not be
    allocated) is sorted here as ``memory``, a ``stack overflow`` as ``stack``. A codec that literally
    throws ``null`` cannot be told apart from the second case and is reported as out of memory too.
    """
    try:
        raw = sandbox.entry(hex_payload, fport, millis, variables_json)
    except quickjs.StackOverflow as err:
        return "stack", first_line(str(err))
    except quickjs.JSException as err:
        message = first_line(str(err))
        return _failure(message), message
    except Exception as err:  # the binding itself failed (e.g. a conversion)
        return "runtime", f"{type(err).__name__}: {first_line(str(err))}"
    if not isinstance(raw, str):
        return "runtime", f"the prelude returned {type(raw).__name__}, expected a string"
    if raw.startswith('{"thrown":'):
        thrown = str(json.loads(raw)["thrown"])
        if thrown == "null" or thrown.startswith("InternalError: out of memory"):
            return "memory", thrown
        if thrown.startswith("InternalError: stack overflow"):
            return "stack", thrown
    return raw


def _failure(message: str) -> Failure:
    # Exceptions the codec throws are caught inside the sandbox (see _PRELUDE); what reaches Python is an
    # interrupt, or an allocation failure that surfaces as "out of memory" or as "null" when QuickJS could
    # not even allocate the error object.
    if message.startswith("InternalError: interrupted"):
        return "time"
    if message in ("", "null") or "out of memory" in message:
        return "memory"
    if "stack overflow" in message:
        return "stack"
    return "runtime"


def first_line(text: str) -> str:
    stripped = text.strip()
    return stripped.splitlines()[0].strip() if stripped else ""
