"""Map a codec's decoded fields onto the metric vocabulary and flag values outside each metric's range."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, NamedTuple

from ioc_core.metrics import VOCABULARY, Metric, Vocabulary

__all__ = ["Normalised", "Quality", "Reading", "normalise"]

_SCALARS = (int, float, bool, str)


class Quality(IntEnum):
    """Stored beside every value; dashboards count only GOOD as data."""

    GOOD = 0
    OUT_OF_RANGE = 1
    NOT_FINITE = 2


class Reading(NamedTuple):  # a tuple: created per message, and cheaper than a frozen dataclass
    metric: Metric
    value: float
    quality: Quality


@dataclass(slots=True)
class Normalised:
    readings: list[Reading] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "measurements": {
                r.metric.name: {"value": r.value, "unit": r.metric.unit, "quality": r.quality.name.lower()}
                for r in self.readings
            },
            "unmapped": self.unmapped,
            "warnings": self.warnings,
        }


def normalise(data: Mapping[str, Any], vocabulary: Vocabulary = VOCABULARY) -> Normalised:
    """Turn decoded ``data`` into readings.

    Accepts flat objects (``{"temperature": 22.5}``), channel-suffixed names (``temperature_1``) and
    ChirpStack's Cayenne LPP shape (``{"temperatureSensor": {"1": 22.5}}``). Strings are not measurements
    and are skipped; numbers with no metric are listed in ``unmapped``. When two fields map to one metric the
    first wins and a warning names the other, because the narrow table holds one value per metric and time.
    """
    out = Normalised()
    seen: dict[str, str] = {}
    resolve = vocabulary.resolve
    flat = True
    for value in data.values():
        # Exact type checks first: an isinstance check against the Mapping ABC is slow.
        kind = type(value)
        if kind is dict or (kind not in _SCALARS and isinstance(value, Mapping)):
            flat = False
            break
    # Most codecs return a flat object of numbers: walk it directly; nested shapes take _leaves.
    items = data.items() if flat else _leaves(data, "")
    for name, value in items:
        kind = type(value)
        if kind is float:
            number = value
        elif kind is int:
            number = _int(value)
        elif kind is bool:
            number = 1.0 if value else 0.0
        else:
            other = _number(value)
            if other is None:
                continue
            number = other
        metric = resolve(name)
        if metric is None:
            out.unmapped.append(name)
            continue
        first = seen.get(metric.name)
        if first is not None:
            out.warnings.append(f"field {name!r} also maps to {metric.name}; kept {first!r}")
            continue
        seen[metric.name] = name
        quality = Quality.GOOD if metric.minimum <= number <= metric.maximum else _quality(metric, number)
        out.readings.append(Reading(metric, number, quality))
    return out


def _leaves(data: Mapping[str, Any], prefix: str) -> list[tuple[str, Any]]:
    leaves: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            if value and all(str(k).isdigit() for k in value):
                # ChirpStack's Cayenne runtime: {"temperatureSensor": {"1": 22.5, "3": 19.0}}
                for channel, inner in value.items():
                    if isinstance(inner, Mapping):
                        leaves.extend(_leaves(inner, f"{key}_{channel}_"))
                    else:
                        leaves.append((f"{key}_{channel}", inner))
            else:
                leaves.extend(_leaves(value, f"{prefix}{key}_"))
        else:
            leaves.append((f"{prefix}{key}" if prefix else str(key), value))
    return leaves


def _int(value: int) -> float:
    try:
        return float(value)
    except OverflowError:  # an integer beyond the double range (hundreds of digits): flagged NOT_FINITE
        return math.inf if value > 0 else -math.inf


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int):
        return _int(value)
    if isinstance(value, float):
        return float(value)
    return None


def _quality(metric: Metric, value: float) -> Quality:
    if not math.isfinite(value):
        return Quality.NOT_FINITE
    if value < metric.minimum or value > metric.maximum:
        return Quality.OUT_OF_RANGE
    return Quality.GOOD
