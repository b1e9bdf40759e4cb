"""Every example of every codec is a test case, generated from the registry; plus the runner's own checks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from ingest.codecs.errors import ExamplesError
from ingest.codecs.examples import (
    Example,
    ExpectedMeasurement,
    diff_values,
    load_examples,
    parse_examples,
    run_example,
)
from ingest.codecs.js_runtime import JsLimits
from ingest.codecs.library import Codec, CodecLibrary
from ingest.codecs.result import DecodeResult
from ingest.normalise import Quality

JS_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "js_codecs"
# Short limits keep the runaway fixtures' examples fast.
TEST_LIMITS = JsLimits(time_limit_ms=50, memory_limit_mb=16)


def _registry() -> CodecLibrary:
    return CodecLibrary.discover(js_dir=JS_FIXTURES, js_limits=TEST_LIMITS)


def _cases() -> list[Any]:
    registry = _registry()
    cases = []
    for info in registry.infos():
        if info.examples is None:
            continue
        codec = registry.get(info.id)
        for example in load_examples(info.examples):
            cases.append(pytest.param(codec, example, id=f"{info.id}#{example.index}"))
    return cases


REGISTRY = _registry()
BUILTINS = [info for info in REGISTRY.infos() if info.kind == "builtin"]


@pytest.mark.parametrize(("codec", "example"), _cases())
def test_example(codec: Codec, example: Example) -> None:
    outcome = run_example(codec, example)
    assert outcome.passed, f"{example.label}:\n  " + "\n  ".join(outcome.problems)


@pytest.mark.parametrize("info", BUILTINS, ids=[info.id for info in BUILTINS])
def test_builtin_has_success_and_error_examples(info: Any) -> None:
    examples = load_examples(info.examples)
    assert any(e.expects_failure for e in examples), "at least one example must expect errors"
    assert any(not e.expects_failure for e in examples), "at least one example must decode"


def test_cayenne_is_registered_with_examples() -> None:
    info = REGISTRY.info("cayenne-lpp")
    assert info.kind == "builtin"
    assert info.examples is not None and info.examples.name == "examples.yaml"


def test_every_js_fixture_with_examples_is_covered() -> None:
    ids = {info.id for info in REGISTRY.infos() if info.kind == "javascript" and info.examples is not None}
    assert {"js:tts_environment", "js:chirpstack_v4_level", "js:chirpstack_v3_rain"} <= ids


# --- the runner itself ---------------------------------------------------------------------------------


@dataclass
class FixedCodec:
    """A codec that returns a prepared result, to exercise the comparison rules."""

    result: DecodeResult
    id: str = "fixed"

    def decode(
        self,
        payload: bytes,
        fport: int,
        *,
        recv_time: datetime | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> DecodeResult:
        return self.result


def _example(output: dict[str, Any], **extra: Any) -> Example:
    entry = {"description": "case", "input": {"fPort": 1, "hex": "00"}, "output": output, **extra}
    return parse_examples({"uplinkDecoder": {"examples": [entry]}}, source="test")[0]


def test_numbers_compare_with_tolerance_and_ints_match_floats() -> None:
    codec = FixedCodec(DecodeResult(data={"t": 27.2, "n": 3.0, "nested": {"v": [1, 2.5]}}))
    example = _example({"data": {"t": 27.200000762939453, "n": 3, "nested": {"v": [1.0, 2.5]}}})
    assert run_example(codec, example).passed


def test_differences_are_listed_one_per_line() -> None:
    codec = FixedCodec(DecodeResult(data={"t": 21.0, "extra": 1, "flag": 1}))
    outcome = run_example(codec, _example({"data": {"t": 22.5, "missing": "x", "flag": True}}))
    assert not outcome.passed
    assert "data.t: expected 22.5, got 21.0" in outcome.problems
    assert 'data.missing: missing (expected "x")' in outcome.problems
    assert "data.extra: unexpected (got 1)" in outcome.problems
    # A boolean is not the number 1.
    assert "data.flag: expected true, got 1" in outcome.problems


def test_diff_values_reports_list_lengths_and_types() -> None:
    assert diff_values([1, 2], [1], "data.v") == ["data.v: expected 2 items, got 1: [1]"]
    assert diff_values({"a": 1}, [1], "data") == ["data: expected an object, got [1]"]
    assert diff_values("a", "a", "x") == []


def test_expected_errors_match_as_substrings() -> None:
    codec = FixedCodec(DecodeResult.failure("truncated payload at byte 4", "second"))
    assert run_example(codec, _example({"errors": ["at byte 4", "second"]})).passed
    outcome = run_example(codec, _example({"errors": ["at byte 5"]}))
    assert outcome.problems == (
        'expected an error containing \'at byte 5\', got ["truncated payload at byte 4", "second"]',
    )


def test_an_empty_errors_list_only_requires_failure() -> None:
    assert run_example(FixedCodec(DecodeResult.failure("anything")), _example({"errors": []})).passed
    outcome = run_example(FixedCodec(DecodeResult(data={"a": 1})), _example({"errors": []}))
    assert not outcome.passed
    assert "expected the decode to fail" in outcome.problems[0]


def test_empty_errors_beside_data_means_success_as_in_ttn_files() -> None:
    example = _example({"data": {"a": 1}, "errors": [], "warnings": []})
    assert not example.expects_failure
    assert run_example(FixedCodec(DecodeResult(data={"a": 1})), example).passed
    warned = run_example(FixedCodec(DecodeResult(data={"a": 1}, warnings=("w",))), example)
    assert warned.problems == ('expected no warnings, got ["w"]',)


def test_unexpected_errors_fail_a_success_example() -> None:
    outcome = run_example(FixedCodec(DecodeResult.failure("boom")), _example({"data": {}}))
    assert outcome.problems == ('unexpected errors: ["boom"]',)


def test_measurements_must_match_exactly() -> None:
    codec = FixedCodec(DecodeResult(data={"temperature_1": 22.5, "voltage_2": 3.3, "humidity": 120}))
    good = _example(
        {"data": {"temperature_1": 22.5, "voltage_2": 3.3, "humidity": 120}},
        measurements={
            "temperature": 22.5,
            "battery_voltage": 3.3,
            "humidity": {"value": 120, "quality": "out_of_range"},
        },
    )
    assert run_example(codec, good).passed
    partial = _example(
        {"data": {"temperature_1": 22.5, "voltage_2": 3.3, "humidity": 120}},
        measurements={"temperature": 20.0, "humidity": {"value": 120, "quality": "good"}},
    )
    problems = run_example(codec, partial).problems
    assert "measurement temperature: expected 20.0, got 22.5" in problems
    assert "measurement humidity: expected quality good, got out_of_range" in problems
    assert any(p.startswith("measurement battery_voltage: unexpected 3.3") for p in problems)


def test_a_raising_codec_fails_the_example_instead_of_the_run() -> None:
    class Raising(FixedCodec):
        def decode(self, payload: bytes, fport: int, **_: Any) -> DecodeResult:
            raise ValueError("bug")

    outcome = run_example(Raising(DecodeResult(data={})), _example({"data": {}}))
    assert outcome.problems == ("the codec raised ValueError: bug",)


def test_example_inputs_parse_bytes_hex_time_and_variables() -> None:
    entries = [
        {"input": {"fPort": 2, "bytes": [0x01, 255]}, "output": {"data": {}}},
        {
            "input": {
                "fPort": 3,
                "hex": " 01 ff\n",
                "recvTime": "2025-06-01T08:30:00Z",
                "variables": {"k": 5},
            },
            "output": {"errors": ["x"], "warnings": ["w"]},
            "hardwareVersions": ["1.0"],
            "normalizedOutput": {"data": []},
        },
    ]
    first, second = parse_examples({"uplinkDecoder": {"fileName": "x.js", "examples": entries}}, source="t")
    assert first.payload == second.payload == b"\x01\xff"
    assert first.label == "#1" and not first.expects_failure
    assert second.recv_time is not None and second.recv_time.isoformat() == "2025-06-01T08:30:00+00:00"
    assert second.variables == {"k": "5"}
    assert second.errors == ("x",) and second.warnings == ("w",)
    assert ExpectedMeasurement(1.0).quality is None
    assert Quality.GOOD.name == "GOOD"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("not a mapping", "expected a mapping"),
        ({"output": {"data": {}}}, "missing 'input'"),
        ({"input": {"hex": "00"}, "output": {"data": {}}}, "fPort"),
        ({"input": {"fPort": 300, "hex": "00"}, "output": {"data": {}}}, "fPort"),
        ({"input": {"fPort": 1}, "output": {"data": {}}}, "exactly one of 'bytes'"),
        ({"input": {"fPort": 1, "hex": "00", "bytes": [0]}, "output": {"data": {}}}, "exactly one of"),
        ({"input": {"fPort": 1, "hex": "0g"}, "output": {"data": {}}}, "not hexadecimal"),
        ({"input": {"fPort": 1, "hex": 1234}, "output": {"data": {}}}, "quote it"),
        ({"input": {"fPort": 1, "bytes": [256]}, "output": {"data": {}}}, "integers from 0 to 255"),
        ({"input": {"fPort": 1, "hex": "00"}}, "missing 'output'"),
        ({"input": {"fPort": 1, "hex": "00"}, "output": {}}, "needs 'data' or 'errors'"),
        ({"input": {"fPort": 1, "hex": "00"}, "output": {"data": [1]}}, "'output.data' must be a mapping"),
        ({"input": {"fPort": 1, "hex": "00"}, "output": {"errors": "x"}}, "list of strings"),
        (
            {"input": {"fPort": 1, "hex": "00"}, "output": {"data": {}}, "measurements": {"temp": 1}},
            "not a metric",
        ),
        (
            {"input": {"fPort": 1, "hex": "00"}, "output": {"errors": []}, "measurements": {}},
            "make no sense",
        ),
        (
            {"input": {"fPort": 1, "hex": "00", "recvTime": "yesterday"}, "output": {"data": {}}},
            "ISO 8601",
        ),
    ],
)
def test_malformed_examples_are_rejected(entry: Any, message: str) -> None:
    with pytest.raises(ExamplesError, match="example #1") as caught:
        parse_examples({"uplinkDecoder": {"examples": [entry]}}, source="file.yaml")
    assert message in str(caught.value)


@pytest.mark.parametrize("document", [None, [], {"uplinkDecoder": None}, {"uplinkDecoder": {"examples": {}}}])
def test_malformed_documents_are_rejected(document: Any) -> None:
    with pytest.raises(ExamplesError, match=r"file\.yaml"):
        parse_examples(document, source="file.yaml")


def test_load_examples_names_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("uplinkDecoder: [", encoding="utf-8")
    with pytest.raises(ExamplesError, match=r"broken\.yaml: not valid YAML"):
        load_examples(broken)
    with pytest.raises(ExamplesError, match="cannot read"):
        load_examples(tmp_path / "absent.yaml")
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"uplinkDecoder": {"examples": []}}), encoding="utf-8")
    assert load_examples(good) == []
