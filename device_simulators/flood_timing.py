"""When the flood scenario's storm must begin for the first river station to reach its alert level at a chosen time,
and the warning levels a river station's simulated stage reaches at chosen moments (the demo's flood)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from device_simulators.environment import Environment
from device_simulators.scenarios import Scenario
from device_simulators.sensors import Sensors
from device_simulators.sites import STATIONS, Station

__all__ = ["StageLevels", "stage_levels", "storm_start_for_alert"]

# The search looks this far back for the storm's start; a 10-hour storm has long raised every river by then.
_LOOKBACK_S: Final = 12 * 3600.0

# A water level reading carries about 4 mm of noise (device_simulators.sensors): levels this far apart are told
# apart by every reading, so the status does not waver between two of them.
_MARGIN_M: Final = 0.02
# How long after the chosen moment a level may come when the river rises slowly then.
_LATEST_S: Final = 1800.0
_STEP_S: Final = 10.0


def storm_start_for_alert(scenario: Scenario, seed: int, at: float,
                          stations: Sequence[Station] = STATIONS["water_level"]) -> float | None:
    """The storm's start (POSIX seconds) for the first of ``stations`` to reach its alert level at ``at``.

    The stages are pure functions of time, the seed's weather and the storm, so a bisection over the storm's
    start finds it: an earlier storm has poured more rain on the catchments by ``at``. None without a storm.
    """
    if scenario.storm_delay_h is None:
        return None

    def excess(begins: float) -> float:
        cell = scenario.storm(begins, begins=begins)
        sensors = Sensors(Environment(seed, cell))
        return max(sensors.river_stage(s.params, at) - s.params["alarm"] for s in stations)

    early, late = at - _LOOKBACK_S, at
    if excess(early) < 0.0:
        return early
    for _ in range(40):  # to well under a second
        middle = (early + late) / 2.0
        if excess(middle) >= 0.0:
            early = middle
        else:
            late = middle
    return late


@dataclass(frozen=True, slots=True)
class StageLevels:
    """Watch, alert and danger levels (m above the gauge zero) and when the stage passes each (POSIX seconds)."""

    watch: float
    alert: float
    danger: float
    watch_at: float
    alert_at: float
    danger_at: float


def stage_levels(scenario: Scenario, seed: int, storm_start: float, params: Mapping[str, float], live: float, *,
                 watch_after_s: float, alert_after_s: float, danger_after_s: float) -> StageLevels | None:
    """Levels that a river station's stage passes about ``watch_after_s``, ``alert_after_s`` and ``danger_after_s``
    after ``live``, under the storm beginning at ``storm_start``; None when the river does not rise through them.

    The demo sets them as a station's own thresholds, so its ward goes watch, alert and danger at moments a
    newcomer can wait for, whatever the station's real warning levels. Each level lies at least a reading's
    noise above the one below, and the alert level above the stage at ``live`` (the backfill's last readings
    stay below it); where the river rises slowly, a level comes later than asked, and not within half an hour
    of it means None.
    """
    if not 0.0 <= watch_after_s < alert_after_s < danger_after_s:
        raise ValueError("the moments must follow each other: watch, then alert, then danger")
    sensors = Sensors(Environment(seed, scenario.storm(storm_start, begins=storm_start)))

    def stage(at: float) -> float:
        return sensors.river_stage(params, at)

    def first_above(level: float, after: float) -> float | None:
        at = after
        while stage(at) < level:
            at += _STEP_S
            if at > after + _LATEST_S:
                return None
        return at

    alert_at = first_above(stage(live) + _MARGIN_M, live + alert_after_s)
    if alert_at is None:
        return None  # the river is not rising here (an ebb tide, a dry catchment): this station shows nothing
    alert = stage(alert_at)
    danger_at = first_above(alert + _MARGIN_M, max(live + danger_after_s, alert_at + _STEP_S))
    if danger_at is None:
        return None
    watch_at = min(live + watch_after_s, alert_at)
    watch = min(stage(watch_at), alert - _MARGIN_M)
    return StageLevels(round(watch, 3), round(alert, 3), round(stage(danger_at), 3), watch_at, alert_at, danger_at)
