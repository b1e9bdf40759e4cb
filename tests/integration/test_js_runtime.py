"""The QuickJS sandbox: the three codec interfaces, limits, failures as errors, and the cost of a call.

Isolation (worker processes, fresh contexts, the breaker) has its own file, test_js_isolation.py.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from ingest.codecs.errors import CodecLoadError
from ingest.codecs.js_runtime import JsCodec, JsFlavour, JsLimits, js_codec_id
from ioc_core.settings import IngestSettings

# Real decoder worker processes, killed and timed: not a unit test (no wall clock in tests/unit/).
pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "js_codecs"
LIMITS = JsLimits(time_limit_ms=50, memory_limit_mb=16, workers=1)
WHEN = datetime(2025, 6, 1, 8, 30, tzinfo=UTC)


def load(name: str, limits: JsLimits = LIMITS) -> JsCodec:
    return JsCodec.load(FIXTURES / name, limits=limits)


def inline(source: str, limits: JsLimits = LIMITS) -> JsCodec:
    return JsCodec("js:inline", source, limits=limits)


# --- the three interfaces ------------------------------------------------------------------------------


def test_the_things_stack_flavour() -> None:
    codec = load("tts_environment.js")
    assert codec.id == "js:tts_environment" and codec.flavour is JsFlavour.DECODE_UPLINK
    result = codec.decode(bytes.fromhex("FF38500B54"), 1)
    assert result.data == {"temperature": -2.0, "humidity": 40, "battery_voltage": 2.9}
    assert result.warnings == ("battery low",) and result.ok
    failed = codec.decode(bytes.fromhex("08CA96"), 1)
    assert failed.errors == ("expected 5 bytes, got 3",) and failed.data == {}


def test_chirpstack_v4_flavour_gets_variables_and_a_date() -> None:
    codec = load("chirpstack_v4_level.js")
    result = codec.decode(b"\x0b\xb8", 2, recv_time=WHEN, variables={"mount_height_mm": "5000"})
    assert result.data == {"distance_mm": 3000, "water_level": 2.0, "received_at": "2025-06-01T08:30:00.000Z"}
    assert codec.decode(b"\x0b\xb8", 2, recv_time=WHEN).errors == ("variable mount_height_mm is not set",)


def test_recv_time_is_a_date_in_utc() -> None:
    codec = inline(
        "function decodeUplink(i) { return {data: {ms: i.recvTime.getTime(),"
        " iso: i.recvTime.toISOString(), isDate: i.recvTime instanceof Date}}; }"
    )
    hanoi = timezone(timedelta(hours=7))
    data = codec.decode(b"", 1, recv_time=datetime(2025, 6, 1, 15, 30, tzinfo=hanoi)).data
    assert data == {"ms": WHEN.timestamp() * 1000, "iso": "2025-06-01T08:30:00.000Z", "isDate": True}
    naive = codec.decode(b"", 1, recv_time=datetime(2025, 6, 1, 8, 30)).data
    assert naive["iso"] == "2025-06-01T08:30:00.000Z"
    before = time.time() * 1000
    assert codec.decode(b"", 1).data["ms"] >= before - 1000


def test_chirpstack_v3_flavour() -> None:
    codec = load("chirpstack_v3_rain.js")
    assert codec.flavour is JsFlavour.V3_DECODE
    assert codec.decode(b"\x00\x0c", 3, variables={"bucket_mm": "0.5"}).data == {
        "tips": 12,
        "rainfall": 6.0,
        "port": 3,
    }
    assert codec.decode(b"\x00", 3).errors == ("JS error: Error: payload too short (at Decode (<input>:5))",)


def test_ttn_v2_decoder_and_precedence() -> None:
    v2 = inline("function Decoder(bytes, port) { return {first: bytes[0], port: port}; }")
    assert v2.flavour is JsFlavour.TTN_V2_DECODER
    assert v2.decode(b"\x07", 9).data == {"first": 7, "port": 9}
    both = inline(
        "function Decode(p, b, v) { return {v3: true}; }\n"
        "function decodeUplink(i) { return {data: {v4: true}}; }"
    )
    assert both.flavour is JsFlavour.DECODE_UPLINK
    assert both.decode(b"", 1).data == {"v4": True}


def test_lexical_declarations_are_found() -> None:
    codec = inline("const decodeUplink = (input) => ({data: {n: input.bytes.length}});")
    assert codec.decode(b"abc", 1).data == {"n": 3}


def test_every_byte_value_arrives_intact() -> None:
    codec = inline("function decodeUplink(i) { return {data: {bytes: i.bytes, port: i.fPort}}; }")
    payload = bytes(range(256))
    assert codec.decode(payload, 224).data == {"bytes": list(payload), "port": 224}
    assert codec.decode(b"", 1).data == {"bytes": [], "port": 1}


# --- limits and failures -------------------------------------------------------------------------------


def test_timeout_is_an_error_and_the_next_payload_decodes() -> None:
    codec = load("loop_forever.js")
    started = time.perf_counter()
    result = codec.decode(b"\x00", 2)
    elapsed = time.perf_counter() - started
    assert result.errors == ("codec timed out after 50 ms",)
    assert elapsed < 2.0
    assert codec.decode(b"\x00", 1).data == {"alive": True}


def test_memory_limit_is_an_error_and_the_next_payload_decodes() -> None:
    codec = load("allocate_forever.js", JsLimits(time_limit_ms=2000, memory_limit_mb=8, workers=1))
    assert codec.decode(b"\x00", 2).errors == ("codec ran out of memory (limit 8 MB)",)
    assert codec.decode(b"\x00", 1).data == {"alive": True}


def test_runaway_recursion_is_an_error() -> None:
    codec = inline("function decodeUplink(i) { function r(n) { return r(n + 1) + 1; } return r(0); }")
    assert codec.decode(b"", 1).errors == ("codec exceeded the stack limit (runaway recursion)",)
    assert codec.decode(b"", 1).errors == ("codec exceeded the stack limit (runaway recursion)",)


def test_every_decode_starts_from_the_codec_as_loaded() -> None:
    codec = inline(
        "var calls = 0;\n"
        "function decodeUplink(i) {\n"
        "  calls++;\n"
        "  if (i.fPort === 2) { for (;;) {} }\n"
        "  if (i.fPort === 3) { throw new RangeError('no'); }\n"
        "  return {data: {calls: calls}};\n"
        "}"
    )
    assert codec.decode(b"", 1).data == {"calls": 1}
    assert codec.decode(b"", 3).errors == ("JS error: RangeError: no (at decodeUplink (<input>:5))",)
    assert codec.decode(b"", 1).data == {"calls": 1}
    assert codec.decode(b"", 2).errors == ("codec timed out after 50 ms",)
    assert codec.decode(b"", 1).data == {"calls": 1}


def test_exceptions_become_errors() -> None:
    codec = load("throws.js")
    assert codec.decode(b"\x01\x02\x03", 1).errors == (
        "JS error: TypeError: cannot decode 3 bytes (at decodeUplink (<input>:3))",
    )


@pytest.mark.parametrize(
    ("thrown", "error"),
    [("'plain'", "JS error: plain"), ("undefined", "JS error: undefined"), ("{code: 3}", 'JS error: {"code":3}')],
)
def test_thrown_non_errors_are_described(thrown: str, error: str) -> None:
    codec = inline(f"function decodeUplink(i) {{ throw {thrown}; }}")
    assert codec.decode(b"", 1).errors == (error,)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("return 42;", "decodeUplink returned a number, expected an object"),
        ("return null;", "decodeUplink returned null, expected an object"),
        ("return;", "decodeUplink returned null, expected an object"),
        ("return [1];", "decodeUplink returned an array, expected an object"),
        ("return {};", "decodeUplink did not return 'data'"),
        ("return {data: 'x'};", "decodeUplink returned 'data' as a string, expected an object"),
        ("var o = {}; o.o = o; return {data: o};", "not JSON: TypeError: circular reference"),
    ],
)
def test_results_that_are_not_decodes_become_errors(body: str, error: str) -> None:
    result = inline(f"function decodeUplink(i) {{ {body} }}").decode(b"", 1)
    assert len(result.errors) == 1 and error in result.errors[0]


def test_errors_and_warnings_are_collected_even_when_malformed() -> None:
    codec = inline("function decodeUplink(i) { return {data: {a: 1}, errors: 'bad', warnings: ['w', 7]}; }")
    result = codec.decode(b"", 1)
    assert result.errors == ("bad",) and result.warnings == ("w", "7") and result.data == {"a": 1}
    empty = inline("function decodeUplink(i) { return {data: {a: 1}, errors: [], warnings: []}; }")
    assert empty.decode(b"", 1).ok


def test_v3_must_return_an_object() -> None:
    codec = inline("function Decode(p, b, v) { return 'text'; }")
    assert codec.decode(b"", 1).errors == ("Decode returned a string, expected an object",)


def test_non_json_values_do_not_crash_conversion() -> None:
    codec = inline(
        "function decodeUplink(i) { return {data: {nan: NaN, inf: -Infinity, big: 12n, f: function () {},"
        " u: undefined, list: [Infinity, 1], when: new Date(0), sym: Symbol('s')}}; }"
    )
    result = codec.decode(b"", 1)
    assert result.ok
    assert result.data == {
        "nan": None,
        "inf": None,
        "big": 12,
        "list": [None, 1],
        "when": "1970-01-01T00:00:00.000Z",
    }
    assert result.warnings == (
        "non-finite number in field 'nan' became null",
        "non-finite number in field 'inf' became null",
        "non-finite number in field '0' became null",
    )


def test_the_sandbox_has_no_host_access() -> None:
    codec = inline(
        "function decodeUplink(i) { return {data: {require: typeof require, std: typeof std, os: typeof os,"
        " process: typeof process, fetch: typeof fetch, xhr: typeof XMLHttpRequest, timer: typeof setTimeout,"
        " console: typeof console.log}}; }"
    )
    assert codec.decode(b"", 1).data == {
        "require": "undefined",
        "std": "undefined",
        "os": "undefined",
        "process": "undefined",
        "fetch": "undefined",
        "xhr": "undefined",
        "timer": "undefined",
        "console": "function",
    }


def test_a_codec_cannot_break_the_runtime_helpers() -> None:
    codec = inline(
        "JSON = null; Date = null; var __ioc_make = null;\n"
        "function decodeUplink(i) { return {data: {t: i.recvTime.getTime()}}; }"
    )
    assert codec.decode(b"", 1, recv_time=WHEN).data == {"t": WHEN.timestamp() * 1000}


def test_threads_share_the_workers() -> None:
    codec = load("tts_environment.js", JsLimits(time_limit_ms=50, memory_limit_mb=16, workers=2))
    results = []

    def work() -> None:
        for _ in range(5):
            results.append(codec.decode(bytes.fromhex("08CA960E10"), 1).data["temperature"])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [22.5] * 20
    assert codec.runtime.pool.started == 2


# --- loading -------------------------------------------------------------------------------------------


def test_syntax_error_fails_at_load() -> None:
    with pytest.raises(CodecLoadError, match=r"syntax_error.js: JavaScript does not load: SyntaxError"):
        load("broken/syntax_error.js")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("var decode = 1;", "defines none of decodeUplink"),
        ("for (;;) {}", "top-level code exceeded the time limit of 50 ms"),
        ("var a = []; for (;;) { a.push(new Array(65536).fill(1)); }", "memory limit"),
        ("throw new Error('at load');", "Error: at load"),
        ("function decodeUplink(i) {}\x00", "NUL character"),
    ],
)
def test_bad_sources_fail_at_load(source: str, message: str) -> None:
    with pytest.raises(CodecLoadError, match=message):
        inline(source, JsLimits(time_limit_ms=50, memory_limit_mb=4))


def test_unreadable_files_fail_at_load(tmp_path: Path) -> None:
    with pytest.raises(CodecLoadError, match="cannot read"):
        JsCodec.load(tmp_path / "absent.js")
    binary = tmp_path / "binary.js"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(CodecLoadError, match="cannot read"):
        JsCodec.load(binary)


def test_ids_and_examples_beside_the_file(tmp_path: Path) -> None:
    assert js_codec_id(Path("/x/Dragino-LHT65_v1.2.js")) == "js:Dragino-LHT65_v1.2"
    with pytest.raises(CodecLoadError, match="file name"):
        js_codec_id(Path("/x/my codec.js"))
    assert load("tts_environment.js").examples_path == FIXTURES / "tts_environment.yaml"
    source = tmp_path / "windsensor.js"
    source.write_text("function decodeUplink(i) { return {data: {}}; }", encoding="utf-8")
    assert JsCodec.load(source).examples_path is None
    (tmp_path / "windsensor-codec.yaml").write_text("uplinkDecoder: {examples: []}", encoding="utf-8")
    assert JsCodec.load(source).examples_path == tmp_path / "windsensor-codec.yaml"
    assert JsCodec.load(source, codec_id="custom").id == "custom"
    assert JsCodec("js:x", "function Decoder(b, p) { return {}; }").examples_path is None


def test_limits_come_from_settings() -> None:
    settings = IngestSettings(
        js_time_limit_ms=250, js_memory_limit_mb=64, js_workers=3, js_kill_grace_ms=500, js_breaker_failures=7,
        js_breaker_window_s=30, js_breaker_cooldown_s=600,
    )
    assert JsLimits.from_settings(settings) == JsLimits(
        time_limit_ms=250, memory_limit_mb=64, workers=3, kill_grace_ms=500, breaker_failures=7,
        breaker_window_s=30.0, breaker_cooldown_s=600.0,
    )


def test_a_decode_costs_well_under_a_millisecond() -> None:
    codec = load("tts_environment.js")
    payload = bytes.fromhex("08CA960E10")
    for _ in range(50):
        codec.decode(payload, 1, recv_time=WHEN)
    rounds = 500
    started = time.perf_counter()
    for _ in range(rounds):
        codec.decode(payload, 1, recv_time=WHEN)
    per_call = (time.perf_counter() - started) / rounds
    # A fresh context per decode plus a pipe round trip: typically 0.3-0.5 ms (bench/js_codec_bench.py);
    # the bound is loose so a busy CI machine does not flake.
    assert per_call < 0.005, f"{per_call * 1e6:.0f} µs per decode"
