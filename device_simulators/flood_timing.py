"""When the flood scenario's storm must begin for the first river station to reach its alert level at a chosen time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from device_simulators.environment import Environment
from device_simulators.scenarios import Scenario
from device_simulators.sensors import Sensors
from device_simulators.sites import STATIONS, Station

__all__ = ["storm_start_for_alert"]

# The search looks this far back for the storm's start; a 10-hour storm has long raised every river by then.
_LOOKBACK_S: Final = 12 * 3600.0


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
