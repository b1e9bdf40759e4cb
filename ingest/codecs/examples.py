"""Device-repository examples (input bytes -> expected output) and the runner that checks a codec on them."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

import yaml

from ingest.codecs.errors import ExamplesError
from ingest.codecs.result import DecodeResult
from ingest.normalise import Quality, normalise
from ioc_core.metrics import VOCABULARY

if TYPE_CHECKING:
    from ingest.codecs.library import Codec

__all__ = [
    "ABS_TOLERANCE",
    "REL_TOLERANCE",
    "Example",
    "ExampleOutcome",
    "ExpectedMeasurement",
    "diff_values",
    "load_examples",
    "parse_examples",
    "run_example",
    "run_examples",
]

# Codecs compute in float64 while device-repository files often hold float32 values
# (27.200000762939453 for 27.2), so numbers compare with a relative tolerance.
REL_TOLERANCE = 1e-6
ABS_TOLERANCE = 1e-9


@dataclass(frozen=True, slots=True)
class ExpectedMeasurement:
    value: float
    quality: Quality | None = None


@dataclass(frozen=True, slots=True)
class Example:
    """One entry of ``uplinkDecoder.examples``.

    ``errors`` is None when the example expects success. ``warnings`` is None when warnings are not
    checked. ``measurements`` (our extension) lists every metric ``ingest.normalise`` must produce.
    """

    index: int
    description: str
    fport: int
    payload: bytes
    data: Mapping[str, Any] | None
    errors: tuple[str, ...] | None
    warnings: tuple[str, ...] | None = None
    measurements: Mapping[str, ExpectedMeasurement] | None = None
    recv_time: datetime | None = None
    variables: Mapping[str, str] | None = None

    @property
    def expects_failure(self) -> bool:
        return self.errors is not None

    @property
    def label(self) -> str:
        return f"#{self.index} {self.description}" if self.description else f"#{self.index}"


@dataclass(frozen=True, slots=True)
class ExampleOutcome:
    example: Example
    result: DecodeResult
    problems: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.problems


def load_examples(path: Path) -> list[Example]:
    """Read and validate an examples file; every problem is an ``ExamplesError`` naming the file."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ExamplesError(f"cannot read examples file {path}: {err}") from err
    except yaml.YAMLError as err:
        raise ExamplesError(f"{path}: not valid YAML: {err}") from err
    return parse_examples(document, source=str(path))


def parse_examples(document: Any, *, source: str) -> list[Example]:
    """Validate the ``uplinkDecoder.examples`` list of a parsed device-repository codec file.

    Keys we do not use (``fileName``, ``hardwareVersions``, ``normalizedOutput``, the downlink
    sections) are accepted and ignored so files from the TTN repository load unchanged.
    """
    if not isinstance(document, Mapping):
        raise ExamplesError(f"{source}: expected a mapping with an 'uplinkDecoder' key")
    decoder = document.get("uplinkDecoder")
    if not isinstance(decoder, Mapping):
        raise ExamplesError(f"{source}: missing 'uplinkDecoder' mapping")
    entries = decoder.get("examples")
    if not isinstance(entries, list):
        raise ExamplesError(f"{source}: 'uplinkDecoder.examples' must be a list")
    return [_parse_example(entry, index, source) for index, entry in enumerate(entries, start=1)]


def run_example(codec: Codec, example: Example) -> ExampleOutcome:
    """Decode the example's bytes and list every difference from the expected output."""
    try:
        result = codec.decode(
            example.payload, example.fport, recv_time=example.recv_time, variables=example.variables
        )
    except Exception as err:  # a codec that raises has a bug; report it as a failed example
        result = DecodeResult.failure(f"codec raised {type(err).__name__}: {err}")
        return ExampleOutcome(example, result, (f"the codec raised {type(err).__name__}: {err}",))
    problems: list[str] = []
    if example.errors is not None:
        _check_failure(example.errors, result, problems)
        if example.data is not None:
            problems.extend(diff_values(example.data, result.data, "data"))
    else:
        if result.errors:
            problems.append(f"unexpected errors: {_show(list(result.errors))}")
        problems.extend(diff_values(example.data or {}, result.data, "data"))
        if example.measurements is not None and not result.errors:
            _check_measurements(example.measurements, result.data, problems)
    if example.warnings is not None:
        _check_messages("warning", example.warnings, result.warnings, problems)
    return ExampleOutcome(example, result, tuple(problems))


def run_examples(codec: Codec, examples: Sequence[Example]) -> list[ExampleOutcome]:
    return [run_example(codec, example) for example in examples]


def diff_values(expected: Any, actual: Any, where: str) -> list[str]:
    """Readable differences between an expected and an actual JSON-like value, one line each."""
    out: list[str] = []
    _diff(expected, actual, where, out)
    return out


def _diff(expected: Any, actual: Any, where: str, out: list[str]) -> None:
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            out.append(f"{where}: expected an object, got {_show(actual)}")
            return
        # YAML allows numeric keys ({1: 22.5}); decoded JSON objects always have string keys.
        wanted = {str(key): value for key, value in expected.items()}
        for key, value in wanted.items():
            if key not in actual:
                out.append(f"{where}.{key}: missing (expected {_show(value)})")
            else:
                _diff(value, actual[key], f"{where}.{key}", out)
        for key, value in actual.items():
            if key not in wanted:
                out.append(f"{where}.{key}: unexpected (got {_show(value)})")
    elif isinstance(expected, list):
        if not isinstance(actual, list):
            out.append(f"{where}: expected a list, got {_show(actual)}")
            return
        if len(expected) != len(actual):
            out.append(f"{where}: expected {len(expected)} items, got {len(actual)}: {_show(actual)}")
        for i, (want, got) in enumerate(zip(expected, actual, strict=False)):
            _diff(want, got, f"{where}[{i}]", out)
    elif _is_number(expected) and _is_number(actual):
        if not _close(float(expected), float(actual)):
            out.append(f"{where}: expected {_show(expected)}, got {_show(actual)}")
    elif type(expected) is not type(actual) or expected != actual:
        out.append(f"{where}: expected {_show(expected)}, got {_show(actual)}")


def _check_failure(expected: tuple[str, ...], result: DecodeResult, problems: list[str]) -> None:
    if result.ok:
        wanted = f" with {_show(list(expected))}" if expected else ""
        problems.append(f"expected the decode to fail{wanted}, but it succeeded with {_show(result.data)}")
        return
    _check_messages("error", expected, result.errors, problems, exact_count=False)


def _check_messages(
    kind: str,
    expected: tuple[str, ...],
    actual: tuple[str, ...],
    problems: list[str],
    *,
    exact_count: bool = True,
) -> None:
    article = "an" if kind[0] in "aeiou" else "a"
    for text in expected:
        if not any(text in message for message in actual):
            problems.append(f"expected {article} {kind} containing {text!r}, got {_show(list(actual))}")
    if exact_count and not expected and actual:
        problems.append(f"expected no {kind}s, got {_show(list(actual))}")


def _check_measurements(
    expected: Mapping[str, ExpectedMeasurement], data: Mapping[str, Any], problems: list[str]
) -> None:
    readings = {reading.metric.name: reading for reading in normalise(data).readings}
    for name, want in expected.items():
        reading = readings.get(name)
        if reading is None:
            problems.append(f"measurement {name}: missing after normalise (expected {_show(want.value)})")
            continue
        if not _close(want.value, reading.value):
            problems.append(f"measurement {name}: expected {_show(want.value)}, got {_show(reading.value)}")
        if want.quality is not None and reading.quality is not want.quality:
            problems.append(
                f"measurement {name}: expected quality {want.quality.name.lower()}, "
                f"got {reading.quality.name.lower()}"
            )
    for name, reading in readings.items():
        if name not in expected:
            problems.append(
                f"measurement {name}: unexpected {_show(reading.value)} (normalise maps a field to it; "
                "list it in 'measurements')"
            )


def _parse_example(entry: Any, index: int, source: str) -> Example:
    where = f"{source}: example #{index}"
    if not isinstance(entry, Mapping):
        raise ExamplesError(f"{where}: expected a mapping")
    description = entry.get("description", "")
    if not isinstance(description, str):
        raise ExamplesError(f"{where}: 'description' must be a string")
    if description:
        where = f"{where} ({description})"
    raw_input = entry.get("input")
    if not isinstance(raw_input, Mapping):
        raise ExamplesError(f"{where}: missing 'input' mapping")
    fport = raw_input.get("fPort")
    if not _is_int(fport) or not 0 <= fport <= 255:
        raise ExamplesError(f"{where}: 'input.fPort' must be an integer from 0 to 255")
    payload = _parse_payload(raw_input, where)
    output = entry.get("output")
    if not isinstance(output, Mapping):
        raise ExamplesError(f"{where}: missing 'output' mapping")
    data = output.get("data")
    if data is not None and not isinstance(data, Mapping):
        raise ExamplesError(f"{where}: 'output.data' must be a mapping")
    errors = _parse_strings(output, "errors", where)
    warnings = _parse_strings(output, "warnings", where)
    if errors is None and data is None:
        raise ExamplesError(f"{where}: 'output' needs 'data' or 'errors'")
    if errors == () and data is not None:
        # TTN files write "errors: []" beside the data of a successful decode.
        errors = None
    measurements = _parse_measurements(entry.get("measurements"), where)
    if measurements is not None and errors is not None:
        raise ExamplesError(f"{where}: 'measurements' make no sense on an example that expects errors")
    return Example(
        index=index,
        description=description,
        fport=fport,
        payload=payload,
        data=data,
        errors=errors,
        warnings=warnings,
        measurements=measurements,
        recv_time=_parse_time(raw_input.get("recvTime"), where),
        variables=_parse_variables(raw_input.get("variables"), where),
    )


def _parse_payload(raw_input: Mapping[str, Any], where: str) -> bytes:
    has_bytes, has_hex = "bytes" in raw_input, "hex" in raw_input
    if has_bytes == has_hex:
        raise ExamplesError(f"{where}: 'input' needs exactly one of 'bytes' (a list) or 'hex' (a string)")
    if has_hex:
        text = raw_input["hex"]
        if not isinstance(text, str):
            raise ExamplesError(f"{where}: 'input.hex' must be a string; quote it in the YAML")
        try:
            return bytes.fromhex("".join(text.split()))
        except ValueError as err:
            raise ExamplesError(f"{where}: 'input.hex' is not hexadecimal: {text!r}") from err
    values = raw_input["bytes"]
    if not isinstance(values, list) or not all(_is_int(b) and 0 <= b <= 255 for b in values):
        raise ExamplesError(f"{where}: 'input.bytes' must be a list of integers from 0 to 255")
    return bytes(values)


def _parse_strings(output: Mapping[str, Any], key: str, where: str) -> tuple[str, ...] | None:
    if key not in output or output[key] is None:
        return None
    values = output[key]
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ExamplesError(f"{where}: 'output.{key}' must be a list of strings")
    return tuple(values)


def _parse_measurements(raw: Any, where: str) -> dict[str, ExpectedMeasurement] | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ExamplesError(f"{where}: 'measurements' must map metric names to values")
    parsed: dict[str, ExpectedMeasurement] = {}
    for name, spec in raw.items():
        if name not in VOCABULARY:
            raise ExamplesError(f"{where}: 'measurements' names {name!r}, which is not a metric")
        quality: Quality | None = None
        value = spec
        if isinstance(spec, Mapping):
            value = spec.get("value")
            if "quality" in spec:
                try:
                    quality = Quality[str(spec["quality"]).upper()]
                except KeyError as err:
                    raise ExamplesError(f"{where}: measurement {name!r} has an unknown quality") from err
        if not _is_number(value):
            raise ExamplesError(f"{where}: measurement {name!r} must be a number or {{value, quality}}")
        parsed[name] = ExpectedMeasurement(float(value), quality)
    return parsed


def _parse_time(raw: Any, where: str) -> datetime | None:
    if raw is None:
        return None
    # PyYAML turns an unquoted timestamp into a datetime already.
    if isinstance(raw, datetime):
        moment = raw
    elif isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError as err:
            raise ExamplesError(f"{where}: 'input.recvTime' is not an ISO 8601 time: {raw!r}") from err
    else:
        raise ExamplesError(f"{where}: 'input.recvTime' must be an ISO 8601 time")
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _parse_variables(raw: Any, where: str) -> dict[str, str] | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or any(isinstance(v, Mapping | list) for v in raw.values()):
        raise ExamplesError(f"{where}: 'input.variables' must map names to strings")
    # ChirpStack device variables are strings; YAML may have read "10" as a number.
    return {str(key): str(value) for key, value in raw.items()}


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _close(expected: float, actual: float) -> bool:
    if math.isnan(expected) or math.isnan(actual):
        return math.isnan(expected) and math.isnan(actual)
    return math.isclose(expected, actual, rel_tol=REL_TOLERANCE, abs_tol=ABS_TOLERANCE)


def _show(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False, allow_nan=True)
    return text if len(text) <= 200 else text[:197] + "..."
