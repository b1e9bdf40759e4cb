"""Hazard status of a zone: the rule, without I/O.

A station (a device that measures a hazard's metric) has a *level* from its newest value against its thresholds
(``level_of``): normal, watch, alert or danger, as FIWARE FloodMonitoring's alert and danger levels with a watch
level below them (Vietnam's BĐ1 for river stations). A station whose value is not fresh (its device is late,
silent or never seen, or it has not measured within the hazard's window) has no level.

A ward's status for a hazard is the worst level of its fresh stations; with stations but none fresh it is
``unknown``, never ``normal`` (``zone_status``). A district is the worst of its own stations and its wards
(``district_status``). When parts are unknown and the rest normal, the whole is unknown: an operator must not read
"normal" where the platform cannot see. A real warning anywhere still wins over unknown:

    danger > alert > watch > unknown > normal

A station's level rises at once but falls only once its value is below the level it had by ``HOLD_MARGIN`` of
that level (hysteresis): a river wavering at its alert level stays at alert instead of flapping between watch
and alert every round, and so do its ward, its district and what follows from them (alarms, incidents, the
history of changes).

A zone without any station for a hazard is ``unknown`` too, with the reason "no stations", but it does not make
its district unknown: most wards will never have, say, an air-quality station.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

__all__ = [
    "HOLD_MARGIN",
    "LEVELS",
    "STATUSES",
    "Evidence",
    "Level",
    "Status",
    "Thresholds",
    "ZoneStatus",
    "district_status",
    "level_of",
    "worst",
    "zone_status",
]

Level = Literal["normal", "watch", "alert", "danger"]
Status = Literal["normal", "watch", "alert", "danger", "unknown"]

LEVELS: tuple[Level, ...] = ("normal", "watch", "alert", "danger")
STATUSES: tuple[Status, ...] = ("normal", "watch", "alert", "danger", "unknown")

# A level held while the value stays within this fraction below its threshold (5 %: 7.5 cm at a 1.5 m alert level;
# bigger than a gauge's noise, smaller than a change that matters).
HOLD_MARGIN = 0.05

# Precedence when combining: a warning anywhere beats not knowing, not knowing beats "normal".
_RANK: dict[Status, int] = {"normal": 0, "unknown": 1, "watch": 2, "alert": 3, "danger": 4}


@dataclass(frozen=True, slots=True)
class Thresholds:
    """A station's levels for one metric; a value strictly above a level reaches it. None: no such level."""

    watch: float | None = None
    alert: float | None = None
    danger: float | None = None

    def __post_init__(self) -> None:
        given = [v for v in (self.watch, self.alert, self.danger) if v is not None]
        if given != sorted(given):
            raise ValueError(f"levels must rise from watch to danger: {self.watch}, {self.alert}, {self.danger}")


def level_of(value: float, thresholds: Thresholds, previous: Level | None = None,
             margin: float = HOLD_MARGIN) -> Level:
    """The level ``value`` reaches: above danger is danger, above alert is alert, above watch is watch.

    With the station's ``previous`` level, a fall is held: the highest level at most ``previous`` whose threshold
    the value is still within ``margin`` (a fraction of the threshold) below."""
    reached = _reached(value, thresholds)
    if previous is None or LEVELS.index(reached) >= LEVELS.index(previous):
        return reached
    for level in reversed(LEVELS[LEVELS.index(reached) + 1:LEVELS.index(previous) + 1]):
        threshold = getattr(thresholds, level)
        if threshold is not None and value > threshold - margin * abs(threshold):
            return level
    return reached


def _reached(value: float, thresholds: Thresholds) -> Level:
    if thresholds.danger is not None and value > thresholds.danger:
        return "danger"
    if thresholds.alert is not None and value > thresholds.alert:
        return "alert"
    if thresholds.watch is not None and value > thresholds.watch:
        return "watch"
    return "normal"


@dataclass(frozen=True, slots=True)
class Evidence:
    """One station's part in a zone's status: its value and level, or why it has none (``level`` None)."""

    dev_eui: str
    zone: str
    metric: str
    value: float | None
    observed_at: datetime | None
    level: Level | None
    note: str = ""


@dataclass(frozen=True, slots=True)
class ZoneStatus:
    """A zone's status for one hazard and the stations that decided it (the worst ones, or the silent ones)."""

    zone: str
    hazard: str
    status: Status
    because: tuple[Evidence, ...]
    reason: str


def worst(statuses: Iterable[Status]) -> Status | None:
    """The status that wins by the precedence above; None for nothing."""
    ranked = sorted(statuses, key=_RANK.__getitem__)
    return ranked[-1] if ranked else None


def zone_status(zone: str, hazard: str, stations: Sequence[Evidence]) -> ZoneStatus:
    """The status of ``zone`` from its own stations' evidence for ``hazard``."""
    if not stations:
        return ZoneStatus(zone, hazard, "unknown", (), "no stations")
    fresh = [s for s in stations if s.level is not None]
    if not fresh:
        return ZoneStatus(zone, hazard, "unknown", tuple(stations),
                          f"none of its {len(stations)} station(s) reported in time")
    top = max(_RANK[s.level] for s in fresh if s.level is not None)
    deciding = tuple(s for s in fresh if s.level is not None and _RANK[s.level] == top)
    status: Status = deciding[0].level if deciding[0].level is not None else "unknown"
    stale = len(stations) - len(fresh)
    if status == "normal" and stale:
        # Some stations are fine and some cannot be seen: say so rather than "normal".
        silent = tuple(s for s in stations if s.level is None)
        return ZoneStatus(zone, hazard, "unknown", silent,
                          f"{stale} of {len(stations)} station(s) did not report in time; the others are normal")
    return ZoneStatus(zone, hazard, status, deciding, _summary(status, deciding, stale))


def district_status(district: str, hazard: str, own: ZoneStatus, wards: Sequence[ZoneStatus]) -> ZoneStatus:
    """A district's status: the worst of its own stations and its wards' statuses. Wards (or the district
    itself) without stations for the hazard do not count; with none counting, the district is unknown."""
    parts = [z for z in (own, *wards) if z.reason != "no stations"]
    if not parts:
        return ZoneStatus(district, hazard, "unknown", (), "no stations")
    status = worst(z.status for z in parts)
    assert status is not None
    deciding = [z for z in parts if z.status == status]
    because = tuple(e for z in deciding for e in z.because)
    where = ", ".join(z.zone for z in deciding)
    return ZoneStatus(district, hazard, status, because, f"{status} in {where}")


def _summary(status: Status, deciding: Sequence[Evidence], stale: int) -> str:
    shown = ", ".join(f"{e.dev_eui} {e.metric} {e.value:g}" for e in deciding[:3] if e.value is not None)
    more = f" and {len(deciding) - 3} more" if len(deciding) > 3 else ""
    silent = f"; {stale} station(s) did not report in time" if stale else ""
    return f"{status}: {shown}{more}{silent}"
