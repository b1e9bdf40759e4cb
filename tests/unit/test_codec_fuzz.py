"""Arbitrary bytes and fPorts never make a codec raise: every input gives a DecodeResult."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.codecs.builtin.cayenne_lpp.codec import TYPES
from ingest.codecs.builtin.cayenne_lpp.codec import decode as cayenne_decode
from ingest.codecs.js_runtime import JsCodec, JsLimits
from ingest.codecs.library import BuiltinCodec, CodecLibrary
from ingest.codecs.result import DecodeResult
from ingest.normalise import normalise

JS_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "js_codecs"

REGISTRY = CodecLibrary.discover()
BUILTINS: list[BuiltinCodec] = [
    codec for codec in (REGISTRY.get(codec_id) for codec_id in REGISTRY) if isinstance(codec, BuiltinCodec)
]
# Well-behaved fixtures get many examples; the runaway ones few, with tight limits, to keep the run short.
JS_CODECS = {
    name: JsCodec.load(JS_FIXTURES / f"{name}.js", limits=JsLimits(time_limit_ms=50, memory_limit_mb=16))
    for name in ("tts_environment", "chirpstack_v4_level", "chirpstack_v3_rain", "throws")
}
RUNAWAY = {
    name: JsCodec.load(JS_FIXTURES / f"{name}.js", limits=JsLimits(time_limit_ms=10, memory_limit_mb=4))
    for name in ("loop_forever", "allocate_forever")
}

payloads = st.binary(max_size=64)
fports = st.integers(min_value=0, max_value=255)
variables = st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3)


def check(result: Any) -> None:
    assert isinstance(result, DecodeResult)
    assert isinstance(result.data, dict)
    assert all(isinstance(e, str) for e in result.errors)
    assert all(isinstance(w, str) for w in result.warnings)
    json.dumps(result.as_json())  # what ingest stores must serialise
    if result.ok:
        normalise(result.data)


@pytest.mark.parametrize("codec", BUILTINS, ids=[codec.id for codec in BUILTINS])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=payloads, fport=fports)
def test_builtin_codecs_never_raise(codec: BuiltinCodec, payload: bytes, fport: int) -> None:
    # The raw function, not the wrapper: the wrapper would turn an exception into an error and hide it.
    check(codec.function(payload, fport))
    check(codec.decode(payload, fport))


@pytest.mark.parametrize("name", sorted(JS_CODECS))
@settings(max_examples=100, deadline=None)
@given(payload=payloads, fport=fports, variables=variables)
def test_js_fixtures_never_raise(name: str, payload: bytes, fport: int, variables: dict[str, str]) -> None:
    check(JS_CODECS[name].decode(payload, fport, variables=variables))


@pytest.mark.parametrize("name", sorted(RUNAWAY))
@settings(max_examples=5, deadline=None)
@given(payload=payloads, fport=fports)
def test_runaway_js_fixtures_never_raise(name: str, payload: bytes, fport: int) -> None:
    check(RUNAWAY[name].decode(payload, fport))


@st.composite
def lpp_frames(draw: st.DrawFn) -> tuple[bytes, int]:
    """A valid Cayenne LPP frame of random records, with the number of distinct fields it holds."""
    records = draw(
        st.lists(st.tuples(st.integers(0, 255), st.sampled_from(sorted(TYPES))), min_size=1, max_size=8)
    )
    frame = bytearray()
    for channel, type_id in records:
        frame += bytes([channel, type_id]) + draw(
            st.binary(min_size=TYPES[type_id].size, max_size=TYPES[type_id].size)
        )
    return bytes(frame), len(set(records))


@settings(max_examples=300)
@given(frame=lpp_frames())
def test_valid_cayenne_frames_decode_every_record(frame: tuple[bytes, int]) -> None:
    payload, fields = frame
    result = cayenne_decode(payload, 1)
    assert result.ok and len(result.data) == fields


@settings(max_examples=300)
@given(frame=lpp_frames(), cut=st.integers(min_value=1, max_value=10))
def test_cut_cayenne_frames_report_truncation(frame: tuple[bytes, int], cut: int) -> None:
    payload = frame[0][: max(len(frame[0]) - cut, 1)]
    result = cayenne_decode(payload, 1)
    if not result.ok:
        assert "truncated payload" in result.errors[0] and "at byte" in result.errors[0]
