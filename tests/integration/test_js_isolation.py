"""Issue 10, part 3: a JavaScript codec cannot stall, poison or starve the ingest.

Each test here reproduces one finding against the in-process runtime of commit 47dd00b (where it fails)
and shows the worker-process runtime handling it: a native built-in that ignores QuickJS's interrupt,
state leaking between decodes, memory exhaustion reported as "JS error: null", and a codec that always
times out costing its time limit on every uplink.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateways.mqtt import InboundMessage
from ingest.codecs.breaker import CodecHealth
from ingest.codecs.js_runtime import JsCodec, JsLimits, JsRuntime
from ingest.codecs.library import CodecInfo, CodecLibrary
from ingest.devices import DeviceRef
from ingest.pipeline import build_rows, parse_messages
from ingest.rows import UPLINK_DECODE_STATUS
from tests.events import uplink

# Real decoder worker processes, killed and timed: not a unit test (no wall clock in tests/unit/).
pytestmark = pytest.mark.integration

# Backtracking of /(a+)+$/ doubles with every 'a': 26 of them keep QuickJS inside its regular-expression
# engine, where the interrupt is never checked, for tens of seconds.
REGEX_BOMB = "function decodeUplink(i) { return {data: {m: /(a+)+$/.test('a'.repeat(26) + '!')}}; }"
STUCK_UNLESS_PORT_1 = (
    "function decodeUplink(i) {\n"
    "  if (i.fPort === 1) { return {data: {alive: true}}; }\n"
    "  return {data: {m: /(a+)+$/.test('a'.repeat(26) + '!')}};\n"
    "}"
)
LIMITS = JsLimits(time_limit_ms=50, memory_limit_mb=16)


def timed(codec: JsCodec, payload: bytes, fport: int) -> tuple[tuple[str, ...], float]:
    started = time.perf_counter()
    result = codec.decode(payload, fport)
    return result.errors, time.perf_counter() - started


# --- a hard wall-clock limit ---------------------------------------------------------------------------


def test_a_backtracking_regex_is_stopped_by_the_deadline() -> None:
    codec = JsCodec("js:regex", REGEX_BOMB, limits=LIMITS)
    errors, elapsed = timed(codec, b"\x00", 2)
    assert elapsed < 2.0, f"the decode took {elapsed:.1f} s"
    assert errors == (
        "codec timed out after 50 ms (stuck in a built-in; its worker was killed after 200 ms)",
    )
    # "And again after a restart": every uplink of it is stopped the same way.
    errors, elapsed = timed(codec, b"\x00", 2)
    assert "timed out" in errors[0] and elapsed < 2.0


def test_the_worker_is_replaced_and_other_uplinks_decode() -> None:
    codec = JsCodec("js:sometimes", STUCK_UNLESS_PORT_1, limits=LIMITS)
    pool = codec.runtime.pool
    assert codec.decode(b"", 1).data == {"alive": True}
    first = pool.started
    assert "timed out" in codec.decode(b"", 2).errors[0]
    assert pool.killed == 1 and pool.started == first + 1
    assert codec.decode(b"", 1).data == {"alive": True}


def test_a_huge_native_sort_is_stopped() -> None:
    # Splitting and sorting two million one-letter strings happens entirely in C, without an interrupt
    # check: about 2 s in the old runtime despite its 10 ms limit, and no error at all.
    codec = JsCodec(
        "js:sort",
        "function decodeUplink(i) { var a = 'abcdefghij'.repeat(200000).split(''); a.sort(); "
        "return {data: {first: a[0]}}; }",
        limits=JsLimits(time_limit_ms=10, memory_limit_mb=256),
    )
    errors, elapsed = timed(codec, b"", 1)
    assert elapsed < 1.0, f"the decode took {elapsed:.1f} s"
    assert errors == ("codec timed out after 10 ms (stuck in a built-in; its worker was killed after 160 ms)",)


def test_a_worker_that_dies_is_reported_and_replaced() -> None:
    codec = JsCodec("js:ok", "function decodeUplink(i) { return {data: {n: i.bytes.length}}; }", limits=LIMITS)
    assert codec.decode(b"abc", 1).data == {"n": 3}
    (worker,) = codec.runtime.pool._idle
    os.kill(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait()
    errors = codec.decode(b"abc", 1).errors
    assert len(errors) == 1 and errors[0].startswith("codec crashed its worker"), errors
    assert codec.decode(b"abcd", 1).data == {"n": 4}
    assert codec.runtime.pool.crashed == 1


# --- no state between decodes ----------------------------------------------------------------------------


def test_globals_and_prototypes_do_not_leak_between_decodes() -> None:
    codec = JsCodec(
        "js:leaky",
        "var seen = [];\n"
        "function decodeUplink(i) {\n"
        "  var before = {seen: seen.length, global: typeof lastDevice, proto: typeof [].poisoned,\n"
        "                json: JSON.stringify({a: 1})};\n"
        "  seen.push(i.variables.dev);\n"
        "  lastDevice = i.variables.dev;\n"
        "  Array.prototype.poisoned = function () { return 'x'; };\n"
        "  JSON.stringify = function () { return 'hijacked'; };\n"
        "  return {data: before};\n"
        "}",
        limits=LIMITS,
    )
    clean = {"seen": 0, "global": "undefined", "proto": "undefined", "json": '{"a":1}'}
    for device in ("a84041000181c4f1", "a84041000181c4f2", "a84041000181c4f1"):
        assert codec.decode(b"", 1, variables={"dev": device}).data == clean


# --- memory exhaustion named ------------------------------------------------------------------------------


def test_memory_exhaustion_is_named_not_js_error_null() -> None:
    # Many small objects: QuickJS runs out while building its own error object and throws null.
    codec = JsCodec(
        "js:hoarder",
        "function decodeUplink(i) { var a = []; for (;;) { a.push({k: a.length}); } }",
        limits=JsLimits(time_limit_ms=2000, memory_limit_mb=8),
    )
    assert codec.decode(b"", 1).errors == ("codec ran out of memory (limit 8 MB)",)


# --- the breaker ------------------------------------------------------------------------------------------


def test_an_always_timing_out_codec_is_disabled_by_its_breaker() -> None:
    codec = JsCodec("js:spin", "function decodeUplink(i) { for (;;) {} }", limits=LIMITS)
    started = time.perf_counter()
    errors = [codec.decode(b"\x01", 2).errors for _ in range(40)]
    elapsed = time.perf_counter() - started
    assert errors[:5] == [("codec timed out after 50 ms",)] * 5
    refusal = "codec disabled after 5 failures in 60 s; retry at "
    assert all(len(e) == 1 and e[0].startswith(refusal) for e in errors[5:])
    # Forty uplinks at 50 ms each would be two seconds; the breaker makes the last 35 free.
    assert elapsed < 1.5, f"{elapsed:.2f} s for 40 uplinks"
    counts = codec.runtime.health.counts()
    assert (counts.timeouts, counts.refused, counts.disabled) == (5, 35, 1)


_STATUS = UPLINK_DECODE_STATUS


def test_a_disabled_codec_dead_letters_its_uplinks_with_the_reason() -> None:
    codec = JsCodec(
        "js:spin", "function decodeUplink(i) { for (;;) {} }",
        # One worker: decodes in order. With more, a batch's decodes run side by side and up to one per
        # extra worker may still be running when the breaker opens.
        limits=JsLimits(time_limit_ms=20, memory_limit_mb=16, breaker_failures=2, workers=1),
    )
    registry = CodecLibrary.of(
        [(codec, CodecInfo(id="js:spin", kind="javascript", name="spin", source=Path("spin.js")))],
        codec.runtime,
    )
    dev_eui = "a84041000181c4f1"
    messages = []
    for f_cnt in range(4):
        topic, payload = uplink(dev_eui, f_cnt, b"\x01\x02", codec="js:spin")
        messages.append(InboundMessage(topic, payload, f_cnt + 1, time.time(), 1, False))
    parsed, dead = parse_messages(messages)
    assert not dead
    device = DeviceRef(id=1, dev_eui=dev_eui, zone_id=None, codec_id="js:spin", status="registered")
    batch = build_rows(parsed, {dev_eui: device}, {}, registry)
    reasons = [letter.reason for letter in batch.dead_letters]
    assert reasons[:2] == ["codec js:spin: codec timed out after 20 ms"] * 2
    assert all(r.startswith("codec js:spin: codec disabled after 2 failures in 60 s; retry at 20") for r in reasons[2:])
    assert len(reasons) == 4 and all(letter.stage == "decode" for letter in batch.dead_letters)
    # The uplink rows are kept, marked as failed decodes, as for any other codec error.
    assert [row[_STATUS] for row in batch.uplinks] == ["error"] * 4
    assert registry.health is not None and registry.health.disabled() == ["js:spin"]
    registry.close()


def test_a_batch_of_javascript_uplinks_is_decoded_across_the_workers() -> None:
    codec = JsCodec(
        "js:echo", "function decodeUplink(i) { return {data: {first: i.bytes[0], port: i.fPort}}; }",
        limits=JsLimits(time_limit_ms=100, memory_limit_mb=16, workers=2),
    )
    registry = CodecLibrary.of(
        [(codec, CodecInfo(id="js:echo", kind="javascript", name="echo", source=Path("echo.js")))], codec.runtime
    )
    devices = {}
    messages = []
    for n in range(12):
        dev_eui = f"a84041000181c4{n:02x}"
        devices[dev_eui] = DeviceRef(id=n + 1, dev_eui=dev_eui, zone_id=None, codec_id="js:echo", status="registered")
        topic, payload = uplink(dev_eui, n, bytes([n, 0xAA]), codec="js:echo")
        messages.append(InboundMessage(topic, payload, n + 1, time.time(), 1, False))
    parsed, _ = parse_messages(messages)
    batch = build_rows(parsed, devices, {}, registry)
    assert not batch.dead_letters and [row[_STATUS] for row in batch.uplinks] == ["ok"] * 12
    # Both workers took part, and the results were handed out, not decoded a second time in line.
    assert codec.runtime.pool.started == 2 and not codec._ahead
    registry.close()


def test_retry_time_in_the_refusal_is_the_wall_clock_plus_the_cool_down() -> None:
    limits = JsLimits(time_limit_ms=20, memory_limit_mb=16, breaker_failures=1, breaker_cooldown_s=600)
    before = datetime(2025, 6, 1, 8, 30, 5, tzinfo=UTC)
    runtime = JsRuntime(limits, health=CodecHealth(limits.breaker, wall=lambda: before))
    codec = JsCodec("js:spin", "function decodeUplink(i) { for (;;) {} }", limits=limits, runtime=runtime)
    codec.decode(b"", 1)
    (refusal,) = codec.decode(b"", 1).errors
    retry_at = datetime.strptime(refusal.rsplit(" ", 1)[1], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert 598 <= (retry_at - before).total_seconds() <= 602


# --- the pool's life cycle -------------------------------------------------------------------------------


def test_workers_start_on_the_first_decode_and_stop_with_the_registry(tmp_path: Path) -> None:
    (tmp_path / "vendor.js").write_text("function decodeUplink(i) { return {data: {n: i.fPort}}; }", "utf-8")
    registry = CodecLibrary.discover(js_dir=tmp_path, js_limits=LIMITS)
    assert registry.js_runtime is not None
    pool = registry.js_runtime.pool
    assert pool.started == 0, "discovering codecs must not start processes"
    assert registry.get("js:vendor").decode(b"", 7).data == {"n": 7}
    (worker,) = pool._idle
    registry.close()
    assert worker.proc.poll() is not None


def test_a_worker_ignores_the_signals_meant_for_the_ingest() -> None:
    # Ctrl+C or systemd's SIGTERM reach the whole group; the ingest then drains, and the drained uplinks
    # must still decode rather than read "codec crashed its worker".
    codec = JsCodec("js:ok", "function decodeUplink(i) { return {data: {n: i.bytes.length}}; }", limits=LIMITS)
    assert codec.decode(b"abc", 1).data == {"n": 3}
    (worker,) = codec.runtime.pool._idle
    os.kill(worker.proc.pid, signal.SIGTERM)
    os.kill(worker.proc.pid, signal.SIGINT)
    assert codec.decode(b"abcd", 1).data == {"n": 4}
    assert worker.proc.poll() is None and codec.runtime.pool.crashed == 0
    codec.runtime.close()


def test_a_closed_runtime_fails_decodes_with_a_reason() -> None:
    codec = JsCodec("js:ok", "function decodeUplink(i) { return {data: {}}; }", limits=LIMITS)
    codec.runtime.close()
    assert codec.decode(b"", 1).errors == (
        "JS runtime failed: no JavaScript worker: RuntimeError: the JavaScript pool is closed",
    )
