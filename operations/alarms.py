"""Alarms, the rule without I/O: which conditions hold, how a repeat updates an alarm, and when one clears.

A *condition* is something wrong seen in one evaluator round (a station above its alert level, a device silent,
the ingest stalled), named by its ``source`` and ``subject``; that pair is the dedupe key, so while an alarm is
active a condition seen again updates it instead of adding another (``plan``). Severity is raised at once and
never lowered while the alarm is active: an incident's operators must not see "critical" quietly turn "major"
while the water still stands high.

An alarm clears with hysteresis, so a value wavering at its threshold does not flap:

* in time: the condition must stay absent for ``CLEAR_AFTER_S`` before the alarm is cleared; seen again during
  that hold, the clearing is cancelled (``clearing_since`` goes back to NULL);
* in value, for hazard alarms: once active, a station's alarm holds until its value falls below the alert level
  by ``HAZARD_MARGIN`` of that level (``hazard_holds``);
* a station that cannot be read (silent, no reading in its window) neither holds nor ends its hazard alarm: the
  alarm stays as it is, its ``device_silent`` alarm says why (``Observation.undetermined``).

Severity by source (documented in docs/operations.md): a station above its alert level is ``major``, above its
danger level ``critical``; a device silent, flat-lined or out of range is ``minor`` (the rule's own severity in
``device_alarm_rules`` for the last two); a gateway offline and dead letters rising are ``major``; the ingest
stalled is ``critical`` (the whole city is blind).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from operations.status import HOLD_MARGIN, Thresholds

__all__ = [
    "CLEAR_AFTER_S",
    "HAZARD_MARGIN",
    "SEVERITIES",
    "SOURCES",
    "ActiveAlarm",
    "Clear",
    "Condition",
    "HazardReading",
    "Observation",
    "Open",
    "Repeat",
    "Severity",
    "Source",
    "StartClearing",
    "Step",
    "as_severity",
    "as_source",
    "hazard_conditions",
    "hazard_holds",
    "hazard_subject",
    "higher",
    "plan",
]

Source = Literal["hazard", "device_silent", "device_flatline", "device_out_of_range", "gateway_offline",
                 "dead_letters", "ingest_stalled"]
Severity = Literal["info", "minor", "major", "critical"]

SOURCES: tuple[Source, ...] = ("hazard", "device_silent", "device_flatline", "device_out_of_range",
                               "gateway_offline", "dead_letters", "ingest_stalled")
SEVERITIES: tuple[Severity, ...] = ("info", "minor", "major", "critical")  # alarm_severities' ranks 0..3

# How long a condition must stay absent before its alarm clears: five evaluator intervals and more, longer
# than a reading's jitter, short enough that a real end is seen within minutes.
CLEAR_AFTER_S = 300
# A hazard alarm holds until the value falls below its alert level by this fraction of the level (5 %: 7.5 cm
# at a 1.5 m alert level), so a river wavering around the level raises one alarm, not one every round. The same
# margin holds a station's level in the status (operations/status.py), so status and alarm fall together.
HAZARD_MARGIN = HOLD_MARGIN


def as_severity(value: str) -> Severity:
    """A stored severity as the type (``ValueError`` for one this code does not know)."""
    for s in SEVERITIES:
        if s == value:
            return s
    raise ValueError(f"unknown severity {value!r}")


def as_source(value: str) -> Source:
    """A stored alarm source as the type (``ValueError`` for one this code does not know)."""
    for s in SOURCES:
        if s == value:
            return s
    raise ValueError(f"unknown alarm source {value!r}")


def higher(a: Severity, b: Severity) -> Severity:
    """The more severe of two severities."""
    return a if SEVERITIES.index(a) >= SEVERITIES.index(b) else b


@dataclass(frozen=True, slots=True)
class Condition:
    """Something wrong, seen at one round. ``zone`` is where it is (a ward, a district) or None city-wide."""

    source: Source
    subject: str
    severity: Severity
    message: str
    zone: str | None = None
    hazard: str | None = None
    device_eui: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.subject)


@dataclass(frozen=True, slots=True)
class Observation:
    """What one round saw: the conditions that hold, and the keys it could not judge (left as they are)."""

    conditions: tuple[Condition, ...] = ()
    undetermined: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True, slots=True)
class ActiveAlarm:
    """An active alarm as stored."""

    id: int
    source: Source
    subject: str
    severity: Severity
    clearing_since: datetime | None

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.subject)


@dataclass(frozen=True, slots=True)
class Open:
    """A condition without an active alarm: a new alarm."""

    condition: Condition


@dataclass(frozen=True, slots=True)
class Repeat:
    """A condition seen again: last_seen, count, message and details updated, the severity raised to
    ``severity`` (``raised`` when that is higher than before), any clearing cancelled."""

    alarm: ActiveAlarm
    condition: Condition
    severity: Severity
    raised: bool


@dataclass(frozen=True, slots=True)
class StartClearing:
    """The condition is gone: the hold begins now."""

    alarm: ActiveAlarm


@dataclass(frozen=True, slots=True)
class Clear:
    """The condition stayed gone for the hold time: the alarm is cleared."""

    alarm: ActiveAlarm


Step = Open | Repeat | StartClearing | Clear


def plan(active: Iterable[ActiveAlarm], seen: Observation, at: datetime,
         clear_after_s: float = CLEAR_AFTER_S) -> list[Step]:
    """What a round does to the stored alarms, given what it saw at ``at``. An alarm already clearing whose
    hold has not passed, and one whose condition could not be judged, need nothing (no step)."""
    by_key = {a.key: a for a in active}
    steps: list[Step] = []
    seen_keys = set()
    for condition in seen.conditions:
        if condition.key in seen_keys:
            continue  # the first wins; sources give one condition per key
        seen_keys.add(condition.key)
        alarm = by_key.get(condition.key)
        if alarm is None:
            steps.append(Open(condition))
            continue
        severity = higher(alarm.severity, condition.severity)
        steps.append(Repeat(alarm, condition, severity, severity != alarm.severity))
    hold = timedelta(seconds=clear_after_s)
    for key, alarm in by_key.items():
        if key in seen_keys or key in seen.undetermined:
            continue
        if alarm.clearing_since is None:
            steps.append(StartClearing(alarm))
        elif at - alarm.clearing_since >= hold:
            steps.append(Clear(alarm))
    return steps


def hazard_holds(value: float, alert: float, *, active: bool, margin: float = HAZARD_MARGIN) -> bool:
    """Whether a station's value keeps (``active``) or raises a hazard alarm at alert level ``alert``: strictly
    above the level to raise, above the level less the margin to keep."""
    if not active:
        return value > alert
    return value > alert - margin * abs(alert)


@dataclass(frozen=True, slots=True)
class HazardReading:
    """One station's value for one hazard measure (None: not fresh), its levels and where it stands."""

    hazard: str
    metric: str
    dev_eui: str
    zone: str
    value: float | None
    thresholds: Thresholds
    observed_at: datetime | None = None


def hazard_subject(reading: HazardReading) -> str:
    """The dedupe subject of a station's hazard alarm: its DevEUI and the threshold metric."""
    return f"{reading.dev_eui}:{reading.metric}"


def hazard_conditions(readings: Sequence[HazardReading], active_subjects: Iterable[str]) -> Observation:
    """Hazard alarms: a station above its alert level is ``major``, above its danger level ``critical``, with
    the value margin for stations whose alarm is active. A station without a fresh value is undetermined."""
    active = set(active_subjects)
    out: list[Condition] = []
    undetermined: set[tuple[str, str]] = set()
    for r in readings:
        subject = hazard_subject(r)
        alert = r.thresholds.alert if r.thresholds.alert is not None else r.thresholds.danger
        if alert is None:
            continue  # a station with only a watch level never raises an alarm
        if r.value is None:
            undetermined.add(("hazard", subject))
            continue
        if not hazard_holds(r.value, alert, active=subject in active):
            continue
        danger = r.thresholds.danger
        severity: Severity = "critical" if danger is not None and r.value > danger else "major"
        level = "danger" if severity == "critical" else "alert"
        limit = danger if severity == "critical" else alert
        out.append(Condition(
            "hazard", subject, severity,
            f"{r.dev_eui} {r.metric} {r.value:g} above its {level} level {limit:g}",
            zone=r.zone, hazard=r.hazard, device_eui=r.dev_eui,
            details={"metric": r.metric, "value": r.value, "level": level, "alert": r.thresholds.alert,
                     "danger": r.thresholds.danger,
                     "observed_at": r.observed_at.isoformat() if r.observed_at else None}))
    return Observation(tuple(out), frozenset(undetermined))
